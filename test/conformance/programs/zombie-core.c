/* A zombie child that dumped core: its wait status (with the core flag) cannot be made again without
 * dumping core again, so ferry must refuse it before the freeze. */
#include "conformance.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  pid_t child = fork();
  if (child == 0) {
    struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &r);
    if (chdir(cf_dir) != 0) _exit(1);
    abort();
  }
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, child, &si, WEXITED | WNOWAIT) != 0) cf_skip("waitid: %s", strerror(errno));
  if (si.si_code != CLD_DUMPED) cf_skip("the child did not dump core (si_code %d): core dumps are off here", si.si_code);
  cf_ready();
  cf_wait_restored();
  memset(&si, 0, sizeof si);
  CF_CHECK(waitid(P_PID, child, &si, WEXITED | WNOHANG) == 0 && si.si_pid == child, "child %d: expected a zombie, got none", child);
  CF_CHECK(si.si_code == CLD_DUMPED && si.si_status == SIGABRT, "child %d: expected killed by SIGABRT with core, got code %d status %d", child, si.si_code, si.si_status);
  cf_pass();
}
