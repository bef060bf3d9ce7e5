/* Exited children not yet waited for stay zombies with their wait status: one exited with 42, one killed by SIGTERM. */
#include "conformance.h"
#include <signal.h>
#include <sys/wait.h>

static char state_of(pid_t pid) {
  char p[64], buf[512];
  snprintf(p, sizeof p, "/proc/%d/stat", pid);
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *c = strrchr(buf, ')');
  return c && c[1] ? c[2] : 0;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  pid_t child = fork();
  if (child == 0) _exit(42);
  pid_t killed = fork();
  if (killed == 0)
    for (;;) pause();
  kill(killed, SIGTERM);
  for (int i = 0; i < 5000 && (state_of(child) != 'Z' || state_of(killed) != 'Z'); i++) usleep(1000);
  if (state_of(child) != 'Z' || state_of(killed) != 'Z') cf_skip("children %d, %d never became zombies", child, killed);
  cf_ready();
  cf_wait_restored();
  char st = state_of(child);
  CF_CHECK(st == 'Z', "child %d: state expected Z, got %c", child, st ? st : '-');
  int status = 0;
  pid_t r = waitpid(child, &status, WNOHANG);
  CF_CHECK(r == child, "waitpid(%d): expected the zombie, got %d (%s)", child, r, r < 0 ? strerror(errno) : "nothing");
  CF_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42, "child %d: exit status expected 42, got raw %#x", child, status);
  CF_CHECK(state_of(killed) == 'Z', "child %d: state expected Z, got %c", killed, state_of(killed) ? state_of(killed) : '-');
  r = waitpid(killed, &status, WNOHANG);
  CF_CHECK(r == killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "child %d: wait status expected killed by SIGTERM, got raw %#x (waitpid %d)", killed, status, r);
  cf_pass();
}
