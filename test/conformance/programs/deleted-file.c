/* A file deleted while open keeps its content and offset; it stays deleted. */
#include "conformance.h"

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/gone", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  if (fd < 0) cf_skip("open: %s", strerror(errno));
  char big[20000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7 + 3);
  if (write(fd, big, sizeof big) != sizeof big) cf_skip("write");
  if (unlink(path) != 0) cf_skip("unlink");
  lseek(fd, 1234, SEEK_SET);
  cf_ready();
  cf_wait_restored();
  struct stat st;
  CF_CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0, "deleted file fd %d: nlink expected 0, got %ld", fd, (long)st.st_nlink);
  CF_CHECK(st.st_size == (off_t)sizeof big && (st.st_mode & 07777) == 0640, "deleted file fd %d: size %ld mode 0%o, expected %zu 0640", fd, (long)st.st_size, st.st_mode & 07777, sizeof big);
  CF_CHECK(lseek(fd, 0, SEEK_CUR) == 1234, "deleted file fd %d: offset expected 1234, got %ld", fd, (long)lseek(fd, 0, SEEK_CUR));
  char back[20000];
  CF_CHECK(pread(fd, back, sizeof back, 0) == sizeof back && memcmp(back, big, sizeof big) == 0, "deleted file fd %d: content differs", fd);
  CF_CHECK(access(path, F_OK) != 0, "deleted file %s: exists again", path);
  cf_pass();
}
