/* A pidfd of a child: it still names the child (pidfd_send_signal reaches it, poll shows its exit). */
#include "conformance.h"
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  pid_t c = fork();
  if (c == 0) {
    for (;;) pause();
  }
  int pfd = (int)syscall(SYS_pidfd_open, c, 0);
  if (pfd < 0) cf_skip("pidfd_open: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  CF_CHECK(syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) == 0, "pidfd %d: pidfd_send_signal: %s", pfd, strerror(errno));
  struct pollfd p = {.fd = pfd, .events = POLLIN};
  CF_CHECK(poll(&p, 1, 5000) == 1, "pidfd %d: the child's exit does not show", pfd);
  int st;
  CF_CHECK(waitpid(c, &st, 0) == c && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child %d: not killed through the pidfd", (int)c);
  cf_pass();
}
