/* A descriptor inherited across fork is one open file description: parent and child share its
 * offset and status flags. The child appends through it after the restore; the parent sees the
 * shared offset move. */
#include "conformance.h"
#include <signal.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/shared", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) cf_skip("open: %s", strerror(errno));
  if (write(fd, "0123456789", 10) != 10) cf_skip("write");
  int dir = open(cf_dir, O_RDONLY | O_DIRECTORY);
  int null = open("/dev/null", O_WRONLY);
  int efd = -1;
  if (dir < 0 || null < 0) cf_skip("open: %s", strerror(errno));
  int go[2];
  if (pipe(go) != 0) cf_skip("pipe");
  pid_t c = fork();
  if (c == 0) {
    close(go[1]);
    char x;
    if (read(go[0], &x, 1) != 1) _exit(2);
    /* Through the shared description: moves the parent's offset too. */
    if (write(fd, "abcde", 5) != 5) _exit(3);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) _exit(4);
    if (fcntl(dir, F_SETFL, O_NONBLOCK) != 0 || fcntl(null, F_SETFL, O_NONBLOCK) != 0) _exit(5);
    _exit(0);
  }
  close(go[0]);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(lseek(fd, 0, SEEK_CUR) == 10, "fd %d: offset expected 10, got %ld", fd, (long)lseek(fd, 0, SEEK_CUR));
  if (write(go[1], "g", 1) != 1) cf_fail("pipe to child: %s", strerror(errno));
  int st = 0;
  waitpid(c, &st, 0);
  CF_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: exit status 0x%x", st);
  off_t off = lseek(fd, 0, SEEK_CUR);
  CF_CHECK(off == 15, "fd %d shared with the child: offset expected 15 after the child's write, got %ld", fd, (long)off);
  CF_CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0, "fd %d shared with the child: O_NONBLOCK set by the child is not seen", fd);
  CF_CHECK((fcntl(dir, F_GETFL) & O_NONBLOCK) != 0, "directory fd %d shared with the child: O_NONBLOCK set by the child is not seen", dir);
  CF_CHECK((fcntl(null, F_GETFL) & O_NONBLOCK) != 0, "/dev/null fd %d shared with the child: O_NONBLOCK set by the child is not seen", null);
  (void)efd;
  cf_pass();
}
