/* A child in a user namespace of its own (as an unprivileged container's processes are): after
 * the restore it is still in that namespace, with its uid map, and its parent still is not. */
#include "conformance.h"
#include <sched.h>
#include <sys/wait.h>

static unsigned long ns_ino(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int ask[2], ans[2];
  if (pipe(ask) != 0 || pipe(ans) != 0) cf_skip("pipe");
  unsigned long host = ns_ino("/proc/self/ns/user");
  pid_t c = fork();
  if (c == 0) {
    if (unshare(CLONE_NEWUSER) != 0) _exit(1);
    unsigned long mine = ns_ino("/proc/self/ns/user");
    write(ans[1], &mine, sizeof mine);
    char x;
    if (read(ask[0], &x, 1) != 1) _exit(1);
    /* After the restore: same namespace, and the uid the parent mapped. */
    unsigned long now[2] = {ns_ino("/proc/self/ns/user"), (unsigned long)getuid()};
    write(ans[1], now, sizeof now);
    _exit(0);
  }
  unsigned long child_ns = 0;
  if (read(ans[0], &child_ns, sizeof child_ns) != sizeof child_ns || child_ns == 0 || child_ns == host) cf_skip("unshare(CLONE_NEWUSER) in the child failed");
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/uid_map", (int)c);
  int fd = open(p, O_WRONLY);
  if (fd < 0 || write(fd, "1000 0 1\n", 9) != 9) cf_skip("uid_map: %s", strerror(errno));
  close(fd);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(ns_ino("/proc/self/ns/user") == host, "process %d: user namespace changed", (int)getpid());
  write(ask[1], "x", 1);
  unsigned long now[2] = {0, 0};
  CF_CHECK(read(ans[0], now, sizeof now) == sizeof now, "child %d: no answer after the restore", (int)c);
  CF_CHECK(now[0] == child_ns, "child %d: user namespace expected inode %lu, got %lu", (int)c, child_ns, now[0]);
  CF_CHECK(now[1] == 1000, "child %d: uid in its user namespace expected 1000, got %lu", (int)c, now[1]);
  int st;
  CF_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: did not exit cleanly", (int)c);
  cf_pass();
}
