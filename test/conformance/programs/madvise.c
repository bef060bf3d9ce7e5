/* madvise flags live on the mapping (smaps VmFlags): DONTFORK dc, DONTDUMP dd, HUGEPAGE hg, NOHUGEPAGE nh, WIPEONFORK wf. */
#include "conformance.h"
#include <stdint.h>
#include <sys/mman.h>

struct area { const char *flag; int advice; uint8_t *addr; };

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct area areas[] = {{"dc", MADV_DONTFORK, 0}, {"dd", MADV_DONTDUMP, 0}, {"hg", MADV_HUGEPAGE, 0}, {"nh", MADV_NOHUGEPAGE, 0}, {"wf", MADV_WIPEONFORK, 0}};
  int n = sizeof areas / sizeof areas[0];
  /* One reservation, split by PROT_NONE gaps so that no two areas merge. */
  uint8_t *base = mmap(NULL, (size_t)n * 2 * 4 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  for (int i = 0; i < n; i++) {
    uint8_t *a = base + (size_t)i * 8 * 4096;
    if (mprotect(a, 4 * 4096, PROT_READ | PROT_WRITE) != 0) cf_fail("mprotect: %s", strerror(errno));
    memset(a, 0x30 + i, 4 * 4096);
    if (madvise(a, 4 * 4096, areas[i].advice) != 0) {
      if (errno == EINVAL && (areas[i].advice == MADV_HUGEPAGE || areas[i].advice == MADV_NOHUGEPAGE)) { areas[i].flag = NULL; continue; }
      cf_fail("madvise(%s): %s", areas[i].flag, strerror(errno));
    }
    areas[i].addr = a;
    if (cf_vmflag(a, areas[i].flag) != 1) cf_skip("VmFlags does not show %s after madvise", areas[i].flag);
  }
  cf_ready();
  cf_wait_restored();
  for (int i = 0; i < n; i++) {
    if (!areas[i].flag) continue;
    int f = cf_vmflag(areas[i].addr, areas[i].flag);
    CF_CHECK(f == 1, "mapping %p: VmFlags %s expected set, got %s", (void *)areas[i].addr, areas[i].flag, f < 0 ? "no such mapping start" : "unset");
    for (int j = 0; j < 4 * 4096; j++) CF_CHECK(areas[i].addr[j] == 0x30 + i, "mapping %p (%s): byte %d expected 0x%x, got 0x%x", (void *)areas[i].addr, areas[i].flag, j, 0x30 + i, areas[i].addr[j]);
  }
  cf_pass();
}
