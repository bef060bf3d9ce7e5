/* A guard region (MADV_GUARD_INSTALL) in the middle of data: the data around it comes back, the guard still faults. */
#include "conformance.h"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

static sigjmp_buf jb;
static void on_segv(int sig) { (void)sig; siglongjmp(jb, 1); }

int main(int argc, char **argv) {
  cf_init(argc, argv);
  uint8_t *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  memset(m, 0x11, 4096);
  memset(m + 2 * 4096, 0x22, 4096);
  if (madvise(m + 4096, 4096, MADV_GUARD_INSTALL) != 0) cf_skip("MADV_GUARD_INSTALL: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  for (int i = 0; i < 4096; i++) {
    CF_CHECK(m[i] == 0x11, "page before the guard: byte %d expected 0x11, got 0x%x", i, m[i]);
    CF_CHECK(m[2 * 4096 + i] == 0x22, "page after the guard: byte %d expected 0x22, got 0x%x", i, m[2 * 4096 + i]);
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, NULL);
  volatile uint8_t *g = m + 4096;
  if (sigsetjmp(jb, 1) == 0) {
    uint8_t v = *g;
    cf_fail("guard page: read expected SIGSEGV, got byte 0x%x", v);
  }
  cf_pass();
}
