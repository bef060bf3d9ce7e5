/* A shared file mapping made from an O_RDWR descriptor (since closed) can still be made writable. */
#include "conformance.h"
#include <stdint.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  char path[4096];
  snprintf(path, sizeof path, "%s/data", cf_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, 2 * 4096) != 0) cf_skip("data file: %s", strerror(errno));
  if (pwrite(fd, "hello", 5, 0) != 5) cf_skip("pwrite: %s", strerror(errno));
  char *m = mmap(NULL, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  close(fd);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(memcmp(m, "hello", 5) == 0, "file mapping: content expected hello, got %.5s", m);
  CF_CHECK(mprotect(m, 2 * 4096, PROT_READ | PROT_WRITE) == 0, "file mapping: mprotect(PROT_WRITE) expected 0, got %s", strerror(errno));
  memcpy(m + 4096, "world", 5);
  msync(m, 2 * 4096, MS_SYNC);
  fd = open(path, O_RDONLY);
  char b[6] = {0};
  CF_CHECK(pread(fd, b, 5, 4096) == 5 && memcmp(b, "world", 5) == 0, "file: write through the mapping expected world, got %s", b);
  cf_pass();
}
