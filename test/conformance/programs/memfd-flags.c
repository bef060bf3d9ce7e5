/* A memfd keeps its file status flags (F_GETFL), its seals and its content. */
#include "conformance.h"
#include <sys/mman.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int fd = memfd_create("cf-memfd", MFD_ALLOW_SEALING);
  if (fd < 0) cf_skip("memfd_create: %s", strerror(errno));
  if (write(fd, "sealed!", 7) != 7) cf_skip("write");
  if (fcntl(fd, F_SETFL, O_APPEND | O_NONBLOCK) != 0) cf_skip("F_SETFL: %s", strerror(errno));
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) cf_skip("F_ADD_SEALS: %s", strerror(errno));
  int fl = fcntl(fd, F_GETFL);
  int seals = fcntl(fd, F_GET_SEALS);
  int plain = memfd_create("cf-plain", 0);
  int plainSeals = fcntl(plain, F_GET_SEALS);
  cf_ready();
  cf_wait_restored();
  int fl2 = fcntl(fd, F_GETFL);
  CF_CHECK(fl2 == fl, "memfd fd %d: F_GETFL expected 0%o, got 0%o", fd, fl, fl2);
  int s2 = fcntl(fd, F_GET_SEALS);
  CF_CHECK(s2 == seals, "memfd fd %d: F_GET_SEALS expected 0x%x, got 0x%x", fd, seals, s2);
  int p2 = fcntl(plain, F_GET_SEALS);
  CF_CHECK(p2 == plainSeals, "memfd fd %d (no sealing): F_GET_SEALS expected 0x%x, got 0x%x", plain, plainSeals, p2);
  char b[8] = {0};
  CF_CHECK(pread(fd, b, 7, 0) == 7 && memcmp(b, "sealed!", 7) == 0, "memfd content: expected 'sealed!', got '%s'", b);
  struct stat st;
  CF_CHECK(fstat(fd, &st) == 0 && st.st_size == 7, "memfd fd %d: size expected 7, got %ld", fd, (long)st.st_size);
  CF_CHECK(ftruncate(fd, 1) == -1 && errno == EPERM, "memfd seal: a shrink was allowed");
  cf_pass();
}
