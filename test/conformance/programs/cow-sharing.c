/* Pages a parent and its child share copy-on-write stay shared: smaps Shared_Clean + Shared_Dirty of the area is
 * unchanged (whether a shared page counts as dirty is the kernel's bookkeeping, not the program's state). */
#include "conformance.h"
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 256

static long field_kb(void *addr, const char *key) {
  char v[128];
  return cf_smaps_value(addr, key, v, sizeof v) ? strtol(v, NULL, 10) : -1;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  /* PROT_NONE pages on both sides keep the area a mapping of its own (nothing else merges into it). */
  uint8_t *r = mmap(NULL, (PAGES + 2) * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  uint8_t *m = r + 4096;
  if (mprotect(m, PAGES * 4096, PROT_READ | PROT_WRITE) != 0) cf_skip("mprotect: %s", strerror(errno));
  for (int i = 0; i < PAGES * 4096; i++) m[i] = (uint8_t)(i / 4096 + 1);
  pid_t child = fork();
  if (child == 0)
    for (;;) pause();
  long shared = field_kb(m, "Shared_Dirty") + field_kb(m, "Shared_Clean");
  if (shared < PAGES * 4) cf_skip("smaps shows %ld kB shared, expected %d", shared, PAGES * 4);
  cf_ready();
  cf_wait_restored();
  long after = field_kb(m, "Shared_Dirty") + field_kb(m, "Shared_Clean");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  for (int i = 0; i < PAGES * 4096; i++) CF_CHECK(m[i] == (uint8_t)(i / 4096 + 1), "area: byte %d expected %u, got %u", i, (uint8_t)(i / 4096 + 1), m[i]);
  CF_CHECK(after == shared, "area %p: Shared_Clean+Shared_Dirty expected %ld kB (shared with the child), got %ld kB", (void *)m, shared, after);
  cf_pass();
}
