/* Private anonymous memory: pages with a pattern, untouched pages, a read-only page; all come back byte for byte. */
#include "conformance.h"
#include <stdint.h>
#include <sys/mman.h>

#define PAGES 64

static uint8_t expect_byte(size_t i) { return (uint8_t)(i * 131 + (i >> 12) * 7 + 1); }

int main(int argc, char **argv) {
  cf_init(argc, argv);
  size_t len = PAGES * 4096;
  uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  for (size_t i = 0; i < len; i++)
    if ((i / 4096) % 3 != 2) m[i] = expect_byte(i); /* every third page stays untouched (zero) */
  if (mprotect(m + 4096, 4096, PROT_READ) != 0) cf_fail("mprotect: %s", strerror(errno));
  uint8_t *heap = malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20); i++) heap[i] = (uint8_t)(i ^ 0x5a);
  cf_ready();
  cf_wait_restored();
  for (size_t i = 0; i < len; i++) {
    uint8_t want = (i / 4096) % 3 != 2 ? expect_byte(i) : 0;
    CF_CHECK(m[i] == want, "anon mapping: byte %zu expected %u, got %u", i, want, m[i]);
  }
  for (size_t i = 0; i < (1 << 20); i++) CF_CHECK(heap[i] == (uint8_t)(i ^ 0x5a), "heap: byte %zu expected %u, got %u", i, (uint8_t)(i ^ 0x5a), heap[i]);
  cf_pass();
}
