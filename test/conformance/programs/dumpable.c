/* A process running under another uid stays dumpable: its /proc files stay its own and readable. */
#include "conformance.h"
#include <grp.h>
#include <sys/prctl.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) cf_skip("cannot change uid: %s", strerror(errno));
  prctl(PR_SET_DUMPABLE, 1);
  cf_ready();
  cf_wait_restored();
  int d = prctl(PR_GET_DUMPABLE);
  CF_CHECK(d == 1, "prctl: dumpable expected 1, got %d", d);
  struct stat st;
  CF_CHECK(stat("/proc/self/environ", &st) == 0 && st.st_uid == 65534, "/proc/self/environ: owner expected 65534, got %d", (int)st.st_uid);
  int fd = open("/proc/self/environ", O_RDONLY);
  CF_CHECK(fd >= 0, "/proc/self/environ: open expected to work, got %s", strerror(errno));
  cf_pass();
}
