/* Resource limits (soft and hard) that a program lowered come back as it left them. */
#include "conformance.h"
#include <sys/resource.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct { int res; rlim_t cur, max; } want[] = {
      {RLIMIT_NOFILE, 200, 300}, {RLIMIT_CORE, 0, 4096}, {RLIMIT_STACK, 4 << 20, 16 << 20}, {RLIMIT_NPROC, 5000, 6000}, {RLIMIT_MSGQUEUE, 1000, 2000}};
  int n = sizeof want / sizeof want[0];
  for (int i = 0; i < n; i++) {
    struct rlimit r = {want[i].cur, want[i].max};
    if (setrlimit(want[i].res, &r) != 0) cf_skip("setrlimit(%d): %s", want[i].res, strerror(errno));
  }
  cf_ready();
  cf_wait_restored();
  for (int i = 0; i < n; i++) {
    struct rlimit r;
    getrlimit(want[i].res, &r);
    CF_CHECK(r.rlim_cur == want[i].cur && r.rlim_max == want[i].max, "rlimit %d: expected %lu/%lu, got %lu/%lu", want[i].res, (unsigned long)want[i].cur, (unsigned long)want[i].max, (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
  }
  cf_pass();
}
