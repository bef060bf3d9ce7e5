/* POSIX record locks (fcntl F_SETLK) held by the process stay held: a child forked after the
 * restore sees the same write and read locks, owned by the restored process. */
#include "conformance.h"

static void lock(int fd, short type, off_t start, off_t len) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fcntl(fd, F_SETLK, &fl) != 0) cf_skip("F_SETLK: %s", strerror(errno));
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/locked", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ftruncate(fd, 100) != 0) cf_skip("open: %s", strerror(errno));
  lock(fd, F_WRLCK, 0, 10);
  lock(fd, F_RDLCK, 20, 10);
  cf_ready();
  cf_wait_restored();
  struct flock w = cf_posix_probe(fd, F_WRLCK, 0, 10);
  CF_CHECK(w.l_type == F_WRLCK && w.l_pid == getpid() && w.l_start == 0 && w.l_len == 10,
           "posix lock [0,10): expected F_WRLCK by %d, got type %d by %d at %ld+%ld", (int)getpid(), w.l_type, (int)w.l_pid, (long)w.l_start, (long)w.l_len);
  struct flock r = cf_posix_probe(fd, F_WRLCK, 20, 10);
  CF_CHECK(r.l_type == F_RDLCK && r.l_pid == getpid(), "posix lock [20,30): expected F_RDLCK by %d, got type %d by %d", (int)getpid(), r.l_type, (int)r.l_pid);
  struct flock n = cf_posix_probe(fd, F_WRLCK, 10, 10);
  CF_CHECK(n.l_type == F_UNLCK, "posix lock [10,20): expected unlocked, got type %d", n.l_type);
  cf_pass();
}
