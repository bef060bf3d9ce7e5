/* Exited children not yet waited for stay zombies with their wait status: one exited with 42, one killed by SIGTERM. */
#include "conformance.h"
#include <signal.h>
#include <sys/wait.h>

/* Exited, waitable and still there: WNOWAIT leaves it a zombie. Asked of the kernel, not /proc,
 * which in a container's pid namespace may name other processes. */
static int is_zombie(pid_t pid) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  return waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  pid_t child = fork();
  if (child == 0) _exit(42);
  pid_t killed = fork();
  if (killed == 0)
    for (;;) pause();
  kill(killed, SIGTERM);
  for (int i = 0; i < 5000 && !(is_zombie(child) && is_zombie(killed)); i++) usleep(1000);
  if (!is_zombie(child) || !is_zombie(killed)) cf_skip("children %d, %d never became zombies", child, killed);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(is_zombie(child), "child %d: expected a zombie", child);
  int status = 0;
  pid_t r = waitpid(child, &status, WNOHANG);
  CF_CHECK(r == child, "waitpid(%d): expected the zombie, got %d (%s)", child, r, r < 0 ? strerror(errno) : "nothing");
  CF_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42, "child %d: exit status expected 42, got raw %#x", child, status);
  CF_CHECK(is_zombie(killed), "child %d: expected a zombie", killed);
  r = waitpid(killed, &status, WNOHANG);
  CF_CHECK(r == killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "child %d: wait status expected killed by SIGTERM, got raw %#x (waitpid %d)", killed, status, r);
  cf_pass();
}
