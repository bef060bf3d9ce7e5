/* PROT_NONE pages keep their contents: written, then protected; readable again after the restore. */
#include "conformance.h"
#include <stdint.h>
#include <sys/mman.h>

#define PAGES 8

int main(int argc, char **argv) {
  cf_init(argc, argv);
  size_t len = PAGES * 4096;
  uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  for (size_t i = 0; i < len; i++) m[i] = (uint8_t)(i * 7 + 3);
  if (mprotect(m, len, PROT_NONE) != 0) cf_fail("mprotect(PROT_NONE): %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  CF_CHECK(mprotect(m, len, PROT_READ) == 0, "PROT_NONE mapping: mprotect(PROT_READ) expected 0, got %s", strerror(errno));
  for (size_t i = 0; i < len; i++) CF_CHECK(m[i] == (uint8_t)(i * 7 + 3), "PROT_NONE mapping: byte %zu expected %u, got %u", i, (uint8_t)(i * 7 + 3), m[i]);
  cf_pass();
}
