// Single-threaded workload that checks its own state every round and says so on stdout:
//   "tick N sum S" lines while healthy, "FAIL <why>" and exit 3 as soon as anything is off.
// State it relies on: heap (brk) and mmap'd anonymous memory, a private file mapping with one
// copied-on-write page, a file written through its fd offset (O_APPEND log and a data file),
// a signal handler that must run on its alternate signal stack, madvise state (WIPEONFORK and
// DONTFORK regions, checked in /proc/self/smaps), nanosleep in the loop (interrupted syscalls),
// its pid.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define N (1u << 20) /* 8 MiB of u64 */
static volatile sig_atomic_t usr1, on_alt;
static char *alt_lo, *alt_hi;
static void on_usr1(int s) {
  char here;
  (void)s;
  usr1++;
  on_alt = &here >= alt_lo && &here < alt_hi;
}

/* The VmFlags line of the mapping starting at addr contains flag. */
static int has_vmflag(void *addr, const char *flag) {
  char want[32], line[512];
  snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
  FILE *f = fopen("/proc/self/smaps", "r");
  int in = 0, found = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strchr(line, '-') && strncmp(line, want, strlen(want)) == 0) in = 1;
    else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      char pat[8];
      snprintf(pat, sizeof pat, " %s", flag);
      found = strstr(line, pat) != NULL;
      break;
    }
  }
  if (f) fclose(f);
  return found;
}

static void fail(const char *why, unsigned long long a, unsigned long long b) {
  printf("FAIL %s %llu %llu\n", why, a, b);
  fflush(stdout);
  exit(3);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  unsigned long long extra_mb = argc > 3 ? strtoull(argv[3], 0, 10) : 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  pid_t me = getpid();
  stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0};
  alt_lo = ss.ss_sp;
  alt_hi = alt_lo + ss.ss_size;
  if (sigaltstack(&ss, NULL)) fail("sigaltstack", 0, 0);
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART};
  sigaction(SIGUSR1, &sa, NULL);
  char *wipe = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *nofork = mmap(NULL, 5 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (madvise(wipe, 3 * 4096, MADV_WIPEONFORK) || madvise(nofork, 5 * 4096, MADV_DONTFORK)) fail("madvise", 0, 0);
  wipe[0] = 1;
  nofork[0] = 2;
  uint64_t *a = mmap(NULL, N * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED) fail("mmap", 0, 0);
  char *heap = malloc(64 * 1024); /* small: comes from brk */
  for (int i = 0; i < 64 * 1024; i++) heap[i] = (char)(i * 7);
  /* optional ballast with a known pattern, for the benchmark sizes */
  uint64_t *big = NULL;
  size_t bign = extra_mb * 1024 * 1024 / 8;
  if (bign) {
    big = mmap(NULL, bign * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < bign; i++) big[i] = i * 0x9e3779b97f4a7c15ull;
  }
  int ro = open(argv[0], O_RDONLY);
  char *fm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
  if (fm == MAP_FAILED) fail("filemap", 0, 0);
  char orig[8192];
  if (pread(ro, orig, 8192, 0) != 8192) fail("pread", 0, 0);
  memcpy(fm + 4096 + 100, "FERRY", 5); /* CoW exactly one page */
  int df = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (df < 0) fail("open data", 0, 0);
  unsigned long long total = 0, tick = 0;
  off_t expect_pos = 0;
  struct timespec ts = {0, 1000000};
  for (;;) {
    for (int j = 0; j < 1000; j++) {
      uint64_t k = (tick * 1000 + j) % N;
      a[k] += k;
      total += k;
    }
    tick++;
    char rec[64];
    int n = snprintf(rec, sizeof rec, "%llu\n", tick);
    if (write(df, rec, n) != n) fail("write data", 0, 0);
    expect_pos += n;
    off_t pos = lseek(df, 0, SEEK_CUR);
    if (pos != expect_pos) fail("data offset", pos, expect_pos);
    if (tick % 50 == 0) {
      unsigned long long s = 0;
      for (unsigned i = 0; i < N; i++) s += a[i];
      if (s != total) fail("anon sum", s, total);
      for (int i = 0; i < 64 * 1024; i++)
        if (heap[i] != (char)(i * 7)) fail("heap", i, 0);
      if (memcmp(fm, orig, 4096) || memcmp(fm + 4096, orig + 4096, 100) || memcmp(fm + 4096 + 100, "FERRY", 5) ||
          memcmp(fm + 4096 + 105, orig + 4096 + 105, 4096 - 105))
        fail("file mapping", 0, 0);
      if (getpid() != me) fail("pid", getpid(), me);
      if (big && (tick / 50) % 20 == 0)
        for (size_t i = 0; i < bign; i += 4096 / 8)
          if (big[i] != i * 0x9e3779b97f4a7c15ull) fail("ballast", i, 0);
      /* the handler must still be ours */
      unsigned before = usr1;
      raise(SIGUSR1);
      if (usr1 != before + 1) fail("sigusr1", usr1, before);
      if (!on_alt) fail("handler not on the alternate stack", 0, 0);
      if (!has_vmflag(wipe, "wf") || !has_vmflag(nofork, "dc")) fail("madvise state lost", 0, 0);
      if (wipe[0] != 1 || nofork[0] != 2) fail("advised pages", wipe[0], nofork[0]);
      printf("tick %llu sum %llu\n", tick, total);
    }
    nanosleep(&ts, NULL);
  }
}
