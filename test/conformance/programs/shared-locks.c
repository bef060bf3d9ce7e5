/* Shared locks only: a POSIX read lock, an OFD read lock, a shared flock() and a read lease stay
 * held. Another description may share each of them and none may take them exclusively. In a live
 * migration between hosts that share the files, these travel: the destination takes its own
 * beside the frozen source's before that one goes, so no other process can slip in between. */
#include "conformance.h"
#include <sys/file.h>

static int open_in(const char *name, int flags) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", cf_dir, name);
  return open(path, flags | O_CREAT, 0644);
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int px = open_in("posix", O_RDWR), ofd = open_in("ofd", O_RDWR), fl = open_in("flock", O_RDWR);
  int lc = open_in("lease", O_RDWR);
  if (px < 0 || ofd < 0 || fl < 0 || lc < 0) cf_skip("open: %s", strerror(errno));
  close(lc); /* a read lease wants no writer */
  int ls = open_in("lease", O_RDONLY);
  struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
  if (fcntl(px, F_SETLK, &r) != 0) cf_skip("F_SETLK: %s", strerror(errno));
  struct flock o = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  if (fcntl(ofd, F_OFD_SETLK, &o) != 0) cf_skip("F_OFD_SETLK: %s", strerror(errno));
  if (flock(fl, LOCK_SH) != 0) cf_skip("flock: %s", strerror(errno));
  if (fcntl(ls, F_SETLEASE, F_RDLCK) != 0) cf_skip("F_SETLEASE: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();

  struct flock w = cf_posix_probe(px, F_WRLCK, 10, 10);
  CF_CHECK(w.l_type == F_RDLCK && w.l_pid == getpid() && w.l_start == 10 && w.l_len == 10,
           "posix read lock [10,20): expected F_RDLCK by %d, got type %d by %d at %ld+%ld", (int)getpid(), w.l_type, (int)w.l_pid, (long)w.l_start, (long)w.l_len);

  int other = open_in("ofd", O_RDWR);
  struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  CF_CHECK(fcntl(other, F_OFD_GETLK, &q) == 0 && q.l_type == F_RDLCK && q.l_start == 0 && q.l_len == 10 && q.l_pid == -1,
           "ofd read lock: expected F_RDLCK at 0+10 (pid -1), got type %d at %ld+%ld pid %d", q.l_type, (long)q.l_start, (long)q.l_len, (int)q.l_pid);
  struct flock share = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  CF_CHECK(fcntl(other, F_OFD_SETLK, &share) == 0, "ofd read lock: another description cannot share it: %s", strerror(errno));

  int f2 = open_in("flock", O_RDWR);
  CF_CHECK(flock(f2, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK, "flock LOCK_SH: another description could lock it exclusively");
  CF_CHECK(flock(f2, LOCK_SH | LOCK_NB) == 0, "flock LOCK_SH: a second shared lock was refused: %s", strerror(errno));

  int got = fcntl(ls, F_GETLEASE);
  CF_CHECK(got == F_RDLCK, "read lease: expected F_RDLCK (%d), got %d", F_RDLCK, got);
  cf_pass();
}
