/* memwriter: a memory-dirtying workload for live migration.
 * argv[2] region size in MiB (default 64), argv[3] write rate in MB/s
 * (default 10, fractional allowed, 0 = no writes), argv[4] pattern:
 * random | hotset | sequential (default random).
 * Every page holds a header word (page index << 32 | generation) and 511
 * words derived from (page, generation). Each page's generation is also kept
 * in a separate table outside the region. A write bumps the generation and
 * rewrites the whole page. Invariant: every page matches its table
 * generation, word for word. Checked on a random sample every round and by a
 * sweep over all pages (at most 256 MB/s of verification, at least one full
 * sweep every 2 s for small regions). */
#include "wl_common.h"
#include <sys/mman.h>

#define PAGE 4096
#define WPP (PAGE / 8)
#define VERIFY_BYTES_PER_S (256.0 * 1024 * 1024)
#define MIN_SWEEP_S 2.0

static uint64_t *region;
static uint32_t *gens;
static uint64_t npages;

static inline uint64_t page_base(uint64_t p, uint32_t gen) { return wl_mix64((p << 32) ^ gen ^ 0x6d656d7772697465ULL); }

__attribute__((optimize("O3"))) static void write_page(uint64_t p, uint32_t gen) {
  uint64_t *w = region + p * WPP;
  uint64_t base = page_base(p, gen);
  w[0] = (p << 32) | gen;
  for (uint64_t j = 1; j < WPP; j++) w[j] = base ^ (j * 0x9E3779B97F4A7C15ULL);
}

/* returns 1 if the page is intact */
__attribute__((optimize("O3"))) static int page_ok(uint64_t p) {
  const uint64_t *w = region + p * WPP;
  uint64_t base = page_base(p, gens[p]);
  uint64_t diff = w[0] ^ ((p << 32) | gens[p]);
  for (uint64_t j = 1; j < WPP; j++) diff |= w[j] ^ (base ^ (j * 0x9E3779B97F4A7C15ULL));
  return diff == 0;
}

static void report_bad_page(uint64_t p, const char *how) {
  const uint64_t *w = region + p * WPP;
  uint32_t g = gens[p];
  if ((w[0] >> 32) != p || (uint32_t)w[0] != g) {
    wl_fail("%s: page %llu (addr %p) header is 0x%016llx: page index %llu gen %u, table says page %llu gen %u", how,
            (unsigned long long)p, (void *)w, (unsigned long long)w[0], (unsigned long long)(w[0] >> 32),
            (uint32_t)w[0], (unsigned long long)p, g);
    return;
  }
  uint64_t base = page_base(p, g);
  for (uint64_t j = 1; j < WPP; j++) {
    uint64_t want = base ^ (j * 0x9E3779B97F4A7C15ULL);
    if (w[j] != want) {
      wl_fail("%s: page %llu (addr %p) word %llu is 0x%016llx, expected 0x%016llx (gen %u)", how,
              (unsigned long long)p, (void *)w, (unsigned long long)j, (unsigned long long)w[j],
              (unsigned long long)want, g);
      return;
    }
  }
}

int main(int argc, char **argv) {
  wl_init("memwriter", argc, argv);
  double mib = argc > 2 ? atof(argv[2]) : 64;
  double rate = argc > 3 ? atof(argv[3]) : 10;
  const char *pattern = argc > 4 ? argv[4] : "random";
  int pat = strcmp(pattern, "random") == 0 ? 0 : strcmp(pattern, "hotset") == 0 ? 1 : strcmp(pattern, "sequential") == 0 ? 2 : -1;
  if (mib <= 0) mib = 64;
  if (rate < 0) rate = 0;
  npages = (uint64_t)(mib * 1024 * 1024) / PAGE;
  if (npages < 16) npages = 16;
  size_t size = npages * PAGE;
  region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  gens = calloc(npages, sizeof *gens);
  if (region == MAP_FAILED || !gens) {
    wl_fail("cannot allocate %llu pages", (unsigned long long)npages);
    for (;;) {
      wl_status(0, "\"phase\":\"failed\",\"pids\":[%d]", (int)getpid());
      wl_sleep_ms(200);
    }
  }
  if (pat < 0) wl_fail("unknown pattern '%s' (random|hotset|sequential)", pattern);
  uint64_t hot = npages / 16 ? npages / 16 : 1;

#define STATUS(phase, filled)                                                                                      \
  wl_status(writes,                                                                                                \
            "\"pids\":[%d],\"phase\":\"%s\",\"region_addr\":\"%p\",\"page_size\":%d,\"pages\":%llu,\"filled\":%llu," \
            "\"size_mib\":%.1f,\"rate_mb_s\":%.3f,\"pattern\":\"%s\",\"hot_pages\":%llu,\"writes\":%llu,"          \
            "\"sample_verified\":%llu,\"sweep_verified\":%llu,\"sweeps\":%llu,\"rate_rebases\":%llu",              \
            (int)getpid(), phase, (void *)region, PAGE, (unsigned long long)npages, (unsigned long long)(filled),   \
            mib, rate, pattern, (unsigned long long)hot, (unsigned long long)writes,                                 \
            (unsigned long long)sample_verified, (unsigned long long)sweep_verified, (unsigned long long)sweeps,     \
            (unsigned long long)rebases)

  uint64_t writes = 0, sample_verified = 0, sweep_verified = 0, sweeps = 0, rebases = 0;
  double last_status = 0;
  for (uint64_t p = 0; p < npages; p++) {
    write_page(p, 0);
    if ((p & 4095) == 0 && wl_mono() - last_status > 0.05) {
      last_status = wl_mono();
      STATUS("filling", p);
    }
  }
  double pages_per_s = rate * 1e6 / PAGE;
  double t0 = wl_mono();
  uint64_t written_since_t0 = 0, seq_cursor = 0, sweep_cursor = 0, rng = 0x1234567;
  double sweep_period = (double)size / VERIFY_BYTES_PER_S;
  if (sweep_period < MIN_SWEEP_S) sweep_period = MIN_SWEEP_S;
  double last_round = t0;
  for (;;) {
    double now = wl_mono();
    /* writes due at the configured rate; after a freeze (or starvation) rebase instead of bursting */
    uint64_t due = (uint64_t)((now - t0) * pages_per_s);
    if (due > written_since_t0 + (uint64_t)(pages_per_s * 0.25) + 1) {
      t0 = now;
      written_since_t0 = 0;
      due = 0;
      rebases++;
    }
    while (written_since_t0 < due) {
      uint64_t p;
      uint64_t r = wl_xorshift(&rng);
      if (pat == 2) p = seq_cursor++ % npages;
      else if (pat == 1) p = (r % 10) ? (r >> 8) % hot : (r >> 8) % npages;
      else p = r % npages;
      if (!page_ok(p)) report_bad_page(p, "before rewrite");
      gens[p]++;
      write_page(p, gens[p]);
      written_since_t0++;
      writes++;
    }
    /* random sample */
    for (int k = 0; k < 32; k++) {
      uint64_t p = wl_xorshift(&rng) % npages;
      if (!page_ok(p)) report_bad_page(p, "sample");
      sample_verified++;
    }
    /* sweep */
    double dt = now - last_round;
    last_round = now;
    if (dt > 0.2) dt = 0.2;
    uint64_t budget = (uint64_t)((double)npages * dt / sweep_period) + 1;
    for (uint64_t k = 0; k < budget; k++) {
      if (!page_ok(sweep_cursor)) report_bad_page(sweep_cursor, "sweep");
      sweep_verified++;
      if (++sweep_cursor == npages) {
        sweep_cursor = 0;
        sweeps++;
      }
    }
    if (now - last_status > 0.05) {
      last_status = now;
      STATUS("running", npages);
    }
    wl_sleep_ms(5);
  }
}
