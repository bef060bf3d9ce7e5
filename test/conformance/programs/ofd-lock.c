/* An open-file-description lock (F_OFD_SETLK) stays held by its description: another
 * description of the same file is refused, the holder itself may still take it. */
#include "conformance.h"

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/locked", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ftruncate(fd, 100) != 0) cf_skip("open: %s", strerror(errno));
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 7};
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) cf_skip("F_OFD_SETLK: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  int other = open(path, O_RDWR);
  CF_CHECK(other >= 0, "reopen: %s", strerror(errno));
  struct flock q = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  CF_CHECK(fcntl(other, F_OFD_GETLK, &q) == 0, "F_OFD_GETLK: %s", strerror(errno));
  CF_CHECK(q.l_type == F_WRLCK && q.l_start == 5 && q.l_len == 7 && q.l_pid == -1,
           "ofd lock: expected F_WRLCK at 5+7 (pid -1), got type %d at %ld+%ld pid %d", q.l_type, (long)q.l_start, (long)q.l_len, (int)q.l_pid);
  struct flock again = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 7};
  CF_CHECK(fcntl(other, F_OFD_SETLK, &again) == -1 && (errno == EAGAIN || errno == EACCES), "ofd lock: a second description could take it");
  CF_CHECK(fcntl(fd, F_OFD_SETLK, &again) == 0, "ofd lock: the holder cannot retake its own lock: %s", strerror(errno));
  cf_pass();
}
