/* An exited child not yet waited for stays a zombie with its exit status. */
#include "conformance.h"
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
  for (int i = 0; i < 5000 && state_of(child) != 'Z'; i++) usleep(1000);
  if (state_of(child) != 'Z') cf_skip("child %d never became a zombie", child);
  cf_ready();
  cf_wait_restored();
  char st = state_of(child);
  CF_CHECK(st == 'Z', "child %d: state expected Z, got %c", child, st ? st : '-');
  int status = 0;
  pid_t r = waitpid(child, &status, WNOHANG);
  CF_CHECK(r == child, "waitpid(%d): expected the zombie, got %d (%s)", child, r, r < 0 ? strerror(errno) : "nothing");
  CF_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42, "child %d: exit status expected 42, got raw %#x", child, status);
  cf_pass();
}
