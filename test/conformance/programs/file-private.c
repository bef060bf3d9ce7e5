/* A private file mapping: pages the program wrote (copied on write) keep its data, the others show the file. */
#include "conformance.h"
#include <stdint.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/data", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) cf_skip("data file: %s", strerror(errno));
  static uint8_t page[4096];
  for (int p = 0; p < 4; p++) {
    memset(page, 'a' + p, sizeof page);
    if (write(fd, page, sizeof page) != (ssize_t)sizeof page) cf_skip("write: %s", strerror(errno));
  }
  uint8_t *m = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (m == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  close(fd);
  memset(m + 4096, 'X', 4096);
  m[3 * 4096 + 7] = 'Y';
  cf_ready();
  cf_wait_restored();
  for (int i = 0; i < 4 * 4096; i++) {
    uint8_t want = i / 4096 == 1 ? 'X' : i == 3 * 4096 + 7 ? 'Y' : (uint8_t)('a' + i / 4096);
    CF_CHECK(m[i] == want, "private file mapping: byte %d expected %c, got %c", i, want, m[i]);
  }
  fd = open(path, O_RDONLY);
  uint8_t b = 0;
  CF_CHECK(pread(fd, &b, 1, 4096) == 1 && b == 'b', "file: private writes expected to stay out of the file (b), got %c", b);
  cf_pass();
}
