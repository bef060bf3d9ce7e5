// Targets for the dirty-page tracking tests.
//   dirty-target seccomp  a seccomp filter makes userfaultfd(2) fail with EPERM (as Docker's
//                         default profile does); the uffd-wp tracker must be refused.
//   dirty-target write    nothing special: a plain writer.
//   dirty-target uffd     the process registers its own userfaultfd (write-protect mode, never
//                         armed, so nothing ever blocks) on a second mapping: the tracker's
//                         UFFDIO_REGISTER there gets EBUSY.
//   dirty-target fill ADDR PAGES pattern|garbage|random|text
//                         maps PAGES at the fixed address ADDR and fills them: "pattern" gives
//                         page i words derived from i with every 5th page left zero, "garbage"
//                         fills 0xee, "random" xorshift words (incompressible), "text" lines of
//                         numbered words (lz4 shrinks it 3-4x); then it waits.
// The first three write random words into a 4 MiB region every millisecond. All print "ready".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void block_userfaultfd(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
    printf("FAIL seccomp: %s\n", strerror(errno));
    exit(3);
  }
}

static void own_userfaultfd(void) {
  size_t len = 16 * 4096;
  char *r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(r, 7, len);
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  struct uffdio_api api = {.api = UFFD_API};
  struct uffdio_register reg = {.range = {(unsigned long)r, len}, .mode = UFFDIO_REGISTER_MODE_WP};
  if (fd < 0 || ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg)) {
    printf("FAIL userfaultfd: %s\n", strerror(errno));
    exit(3);
  }
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(mode, "fill") == 0 && argc > 4) {
    uintptr_t addr = strtoull(argv[2], NULL, 16);
    size_t pages = strtoull(argv[3], NULL, 10);
    uint64_t *p = mmap((void *)addr, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
      printf("FAIL mmap: %s\n", strerror(errno));
      return 3;
    }
    const char *kind = argv[4];
    uint64_t x = 88172645463325252ULL;
    if (strcmp(kind, "text") == 0) {
      char *c = (char *)p, *end = c + pages * 4096;
      for (unsigned long n = 0; c < end; n++) {
        char line[64];
        int k = snprintf(line, sizeof line, "record %lu: value %lu ok\n", n, (n * 7919) % 100000);
        for (int q = 0; q < k && c < end; q++) *c++ = line[q];
      }
    } else
      for (size_t i = 0; i < pages; i++)
        for (size_t j = 0; j < 512; j++) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          p[i * 512 + j] = strcmp(kind, "garbage") == 0 ? 0xeeeeeeeeeeeeeeeeULL
                           : strcmp(kind, "random") == 0 ? x
                           : i % 5 == 4              ? 0
                                                     : (i << 32 | j) * 0x9E3779B97F4A7C15ULL;
        }
    printf("ready\n");
    for (;;) pause();
  }
  if (strcmp(mode, "seccomp") == 0) block_userfaultfd();
  else if (strcmp(mode, "uffd") == 0) own_userfaultfd();
  else if (strcmp(mode, "write") != 0) {
    printf("FAIL usage: dirty-target seccomp|write|uffd|fill ADDR PAGES pattern|garbage|random|text\n");
    return 2;
  }
  size_t words = (4u << 20) / 8;
  uint64_t *region = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint64_t x = 88172645463325252ULL ^ (uint64_t)getpid();
  for (size_t k = 0; k < words; k++) region[k] = k;
  printf("ready\n");
  for (;;) {
    for (int k = 0; k < 64; k++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      region[x % words] = x;
    }
    usleep(1000);
  }
}
