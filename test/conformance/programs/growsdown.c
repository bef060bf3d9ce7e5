/* A MAP_GROWSDOWN mapping (a hand-made stack) stays one that grows: smaps gd, and touching below it extends it. */
#include "conformance.h"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

static sigjmp_buf jb;
static void on_segv(int sig) { (void)sig; siglongjmp(jb, 1); }

int main(int argc, char **argv) {
  cf_init(argc, argv);
  /* Free room below: reserve 64 MiB, give it back, and put the growing area at its top. */
  size_t room = 64 << 20;
  uint8_t *r = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  munmap(r, room);
  uint8_t *g = mmap(r + room - 2 * 4096, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
  if (g == MAP_FAILED) cf_skip("mmap(MAP_GROWSDOWN): %s", strerror(errno));
  memset(g, 0x5c, 2 * 4096);
  if (cf_vmflag(g, "gd") != 1) cf_skip("smaps shows no gd flag on a MAP_GROWSDOWN mapping");
  cf_ready();
  cf_wait_restored();
  int gd = cf_vmflag(g, "gd");
  CF_CHECK(gd == 1, "mapping %p: VmFlags gd expected set, got %s", (void *)g, gd < 0 ? "no mapping" : "unset");
  for (int i = 0; i < 2 * 4096; i++) CF_CHECK(g[i] == 0x5c, "growsdown mapping: byte %d expected 0x5c, got 0x%x", i, g[i]);
  struct sigaction sa = {0};
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, NULL);
  if (sigsetjmp(jb, 1) != 0) cf_fail("growsdown mapping %p: touching the page below expected growth, got SIGSEGV", (void *)g);
  volatile uint8_t *below = g - 4096;
  *below = 1;
  CF_CHECK(cf_vmflag(g - 4096, "gd") == 1, "growsdown mapping: after growth the page below expected part of it, got %d", cf_vmflag(g - 4096, "gd"));
  cf_pass();
}
