/* Per-process prctl state: child subreaper, THP disable, parent-death signal, dumpable (PR_GET_*). */
#include "conformance.h"
#include <signal.h>
#include <sys/prctl.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) cf_skip("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) cf_skip("PR_SET_THP_DISABLE: %s", strerror(errno));
  if (prctl(PR_SET_PDEATHSIG, SIGUSR2) != 0) cf_skip("PR_SET_PDEATHSIG: %s", strerror(errno));
  if (prctl(PR_SET_DUMPABLE, 0) != 0) cf_skip("PR_SET_DUMPABLE: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  int v = 0;
  prctl(PR_GET_CHILD_SUBREAPER, &v);
  CF_CHECK(v == 1, "prctl: child subreaper expected 1, got %d", v);
  int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  CF_CHECK(thp == 1, "prctl: THP disable expected 1, got %d", thp);
  v = 0;
  prctl(PR_GET_PDEATHSIG, &v);
  CF_CHECK(v == SIGUSR2, "prctl: parent-death signal expected %d, got %d", SIGUSR2, v);
  int d = prctl(PR_GET_DUMPABLE);
  CF_CHECK(d == 0, "prctl: dumpable expected 0, got %d", d);
  cf_pass();
}
