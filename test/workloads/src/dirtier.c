/* dirtier: memory churn for dirty-page tracking (pre-copy) tests.
 * argv[2] main region in MiB (default 16); argv[3] features, comma separated
 * (default "threads,churn,fork"):
 *   threads  two writer threads: random words over the whole region, and a
 *            hot set (its first 1/16) written ten times as often;
 *   churn    the main thread keeps up to 24 small mappings ("slots") moving:
 *            mmap, munmap, mremap (grow, shrink, move onto another mapping),
 *            munmap + mmap again at the same address, MAP_FIXED over part of
 *            a slot, MADV_DONTNEED, mprotect read-only and back, rewrites;
 *   fork     a child forked after the fill does the same on its
 *            copy-on-write copy (own threads, own seed), status in
 *            <status>.child;
 *   late     the fork happens a second after start instead (while a
 *            tracker started early is already following the parent);
 *   forkloop every half second a short-lived child verifies every slot of
 *            its copy-on-write copy and exits, its verdict read back through
 *            a pipe (a fork while the memory is being migrated: post-copy).
 * Self-check: every slot page holds a pattern of (slot seed, page, generation)
 * or zeros where it was dropped or newly mapped; a slot is verified before it
 * is unmapped or moved and after every move, and slot 0 (the anchor, never
 * unmapped, address in "anchor_addr") is swept every round.
 * A slot is only resized or moved while it is one VMA: after MAP_FIXED over
 * part of it the parts merge again only when their flags match (with uffd-wp
 * tracking, not until the tracker registers the new part), and a move across
 * VMAs can fail half done (Linux 6.17+ moves VMA by VMA). A move that fails
 * anyway (the VMA was split after the check) abandons the slot and counts in
 * "move_failures". */
#include "wl_common.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define WPP (PAGE / 8)
#define NSLOTS 24
#define MAXPG 96

struct slot {
  uint64_t *addr; /* NULL: empty */
  size_t pages;
  uint64_t seed;
  uint32_t gen[MAXPG]; /* 0: page reads as zeros */
};

static struct slot slots[NSLOTS];
static uint64_t *region;
static size_t region_words, hot_words;
static volatile uint64_t thread_writes[2];
static uint64_t ops, verified, move_failures;
static const char *role = "parent";

static inline uint64_t word_of(const struct slot *s, size_t p, size_t j) {
  return wl_mix64(s->seed ^ ((uint64_t)p << 20) ^ ((uint64_t)s->gen[p] << 40) ^ j);
}

static void write_page(struct slot *s, size_t p) {
  s->gen[p]++;
  uint64_t *w = s->addr + p * WPP;
  for (size_t j = 0; j < WPP; j++) w[j] = word_of(s, p, j);
}

static void verify(int i, const char *when) {
  struct slot *s = &slots[i];
  if (!s->addr) return;
  for (size_t p = 0; p < s->pages; p++) {
    const uint64_t *w = s->addr + p * WPP;
    for (size_t j = 0; j < WPP; j++) {
      uint64_t want = s->gen[p] ? word_of(s, p, j) : 0;
      if (w[j] != want) {
        wl_fail("%s: slot %d page %zu (addr %p) word %zu is 0x%016llx, expected 0x%016llx (gen %u, %s)", role, i, p,
                (void *)(w + j), j, (unsigned long long)w[j], (unsigned long long)want, s->gen[p], when);
        return;
      }
    }
  }
  verified++;
}

/* Whether [a, a+len) lies inside one VMA. */
static int one_vma(const void *a, size_t len) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  unsigned long lo, hi, x = (unsigned long)a;
  char line[512];
  int ok = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= x && x < hi) {
      ok = x + len <= hi;
      break;
    }
  fclose(f);
  return ok;
}

static uint64_t *map_anon(void *at, size_t pages) {
  void *p = mmap(at, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);
  if (p == MAP_FAILED) {
    wl_fail("%s: mmap of %zu pages failed: %s", role, pages, strerror(errno));
    return NULL;
  }
  return p;
}

static void fresh(struct slot *s, uint64_t *addr, size_t pages, uint64_t seed) {
  s->addr = addr;
  s->pages = pages;
  s->seed = seed;
  memset(s->gen, 0, sizeof s->gen);
}

/* One random change to the slots. */
static void churn_op(uint64_t *rng) {
  int i = (int)(wl_xorshift(rng) % NSLOTS);
  struct slot *s = &slots[i];
  uint64_t r = wl_xorshift(rng);
  int op = (int)(r % 9);
  ops++;
  if (!s->addr) { /* map a new slot, write some of its pages */
    size_t pages = 1 + (r >> 8) % 64;
    uint64_t *a = map_anon(NULL, pages);
    if (!a) return;
    fresh(s, a, pages, wl_xorshift(rng));
    for (size_t p = 0; p < pages; p++)
      if (wl_xorshift(rng) % 3) write_page(s, p);
    return;
  }
  switch (op) {
  case 0: /* unmap (never the anchor) */
    if (i == 0) break;
    verify(i, "before munmap");
    munmap(s->addr, s->pages * PAGE);
    s->addr = NULL;
    break;
  case 1: { /* grow, maybe moving (the anchor keeps its place) */
    if (i == 0 || !one_vma(s->addr, s->pages * PAGE)) break;
    verify(i, "before grow");
    size_t pages = s->pages + 1 + (r >> 8) % 24;
    if (pages > MAXPG) break;
    void *n = mremap(s->addr, s->pages * PAGE, pages * PAGE, MREMAP_MAYMOVE);
    if (n == MAP_FAILED) break;
    s->addr = n;
    for (size_t p = s->pages; p < pages; p++) s->gen[p] = 0;
    s->pages = pages;
    verify(i, "after grow");
    if (wl_xorshift(rng) % 2) write_page(s, pages - 1);
    break;
  }
  case 2: { /* shrink */
    if (i == 0 || s->pages < 2 || !one_vma(s->addr, s->pages * PAGE)) break;
    verify(i, "before shrink");
    if (mremap(s->addr, s->pages * PAGE, (s->pages / 2) * PAGE, 0) == MAP_FAILED) break;
    s->pages /= 2;
    verify(i, "after shrink");
    break;
  }
  case 3: { /* move onto a new mapping (replacing it) */
    if (i == 0 || !one_vma(s->addr, s->pages * PAGE)) break;
    verify(i, "before move");
    uint64_t *dst = map_anon(NULL, s->pages);
    if (!dst) break;
    void *n = mremap(s->addr, s->pages * PAGE, s->pages * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    if (n == MAP_FAILED) {
      /* The VMA was split after the check (a tracker registering a stale range splits it) and
       * the move stopped half way: the slot's content is no longer where it was; abandon it. */
      move_failures++;
      s->addr = NULL;
      break;
    }
    s->addr = n;
    verify(i, "after move");
    break;
  }
  case 4: /* unmap and map again at the same address: all zeros */
    if (i == 0) break;
    verify(i, "before remap");
    munmap(s->addr, s->pages * PAGE);
    if (!map_anon(s->addr, s->pages)) {
      s->addr = NULL;
      break;
    }
    memset(s->gen, 0, sizeof s->gen);
    if (wl_xorshift(rng) % 2) write_page(s, 0);
    break;
  case 5: { /* MADV_DONTNEED some pages */
    size_t a = (r >> 8) % s->pages, n = 1 + (r >> 20) % (s->pages - a);
    madvise(s->addr + a * WPP, n * PAGE, MADV_DONTNEED);
    for (size_t p = a; p < a + n; p++) s->gen[p] = 0;
    if (wl_xorshift(rng) % 2) write_page(s, a);
    break;
  }
  case 6: { /* MAP_FIXED over part of the slot */
    size_t a = (r >> 8) % s->pages, n = 1 + (r >> 20) % (s->pages - a);
    if (!map_anon(s->addr + a * WPP, n)) break;
    for (size_t p = a; p < a + n; p++) s->gen[p] = 0;
    break;
  }
  case 7: /* read-only for a moment, then writable again and written */
    mprotect(s->addr, s->pages * PAGE, PROT_READ);
    verify(i, "while read-only");
    mprotect(s->addr, s->pages * PAGE, PROT_READ | PROT_WRITE);
    write_page(s, (r >> 8) % s->pages);
    break;
  default: /* rewrite a few pages */
    for (int k = 0; k < 4; k++) write_page(s, wl_xorshift(rng) % s->pages);
  }
}

static void *writer(void *arg) {
  int hot = (int)(intptr_t)arg;
  uint64_t rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)getpid() << 8) ^ (uint64_t)hot;
  for (;;) {
    for (int k = 0; k < (hot ? 512 : 64); k++) {
      uint64_t r = wl_xorshift(&rng);
      region[(r >> 4) % (hot ? hot_words : region_words)] = r;
    }
    thread_writes[hot]++;
    wl_sleep_ms(0.2);
  }
  return NULL;
}

static int forked;
static unsigned long long forks_checked;

/* A child verifies every slot of its copy and reports what it found (nothing: all good). */
static void fork_check(void) {
  int fds[2];
  if (pipe(fds) != 0) return;
  pid_t c = fork();
  if (c < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (c == 0) {
    close(fds[0]);
    role = "forked checker";
    for (int i = 0; i < NSLOTS; i++) verify(i, "forked checker");
    if (!wl_ok()) {
      while (__atomic_load_n(&wl_failed, __ATOMIC_ACQUIRE) != 2) {
      }
      if (write(fds[1], wl_err, strlen(wl_err)) < 0) _exit(3);
    }
    _exit(0);
  }
  close(fds[1]);
  char buf[1024];
  ssize_t n, got = 0;
  while ((n = read(fds[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0) got += n;
  close(fds[0]);
  int st = 0;
  waitpid(c, &st, 0);
  buf[got > 0 ? got : 0] = 0;
  if (got > 0) wl_fail("%s", buf);
  else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) wl_fail("forked checker ended with status 0x%x", st);
  else forks_checked++;
}

/* Forks the child; in the child, returns 0 with the role and status path switched. */
static pid_t fork_child(uint64_t *rng, const char *status_path) {
  forked = 1;
  pid_t child = fork();
  if (child == 0) {
    role = "child";
    snprintf(wl_path, sizeof wl_path, "%s.child", status_path);
    *rng ^= 0xc41d;
  } else if (child < 0) {
    wl_fail("fork failed: %s", strerror(errno));
    child = 0;
  }
  return child;
}

static void start_writers(void) {
  pthread_t t;
  pthread_create(&t, NULL, writer, (void *)0);
  pthread_create(&t, NULL, writer, (void *)1);
}

static void status(pid_t child, double mib) {
  int live = 0;
  for (int i = 0; i < NSLOTS; i++) live += slots[i].addr != NULL;
  char pids[64];
  if (child > 0) snprintf(pids, sizeof pids, "[%d,%d]", (int)getpid(), (int)child);
  else snprintf(pids, sizeof pids, "[%d]", (int)getpid());
  wl_status(ops, "\"pids\":%s,\"role\":\"%s\",\"region_addr\":\"%p\",\"region_mib\":%.1f,\"anchor_addr\":\"%p\",\"anchor_pages\":%zu,"
            "\"slots_live\":%d,\"verified\":%llu,\"move_failures\":%llu,\"forks_checked\":%llu,\"thread_writes\":[%llu,%llu]",
            pids, role, (void *)region, mib, (void *)slots[0].addr, slots[0].pages, live, (unsigned long long)verified,
            (unsigned long long)move_failures, forks_checked,
            (unsigned long long)thread_writes[0], (unsigned long long)thread_writes[1]);
}

/* Whether the comma-separated list holds exactly this word. */
static int has(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
  return 0;
}

int main(int argc, char **argv) {
  wl_init("dirtier", argc, argv);
  double mib = argc > 2 ? atof(argv[2]) : 16;
  const char *features = argc > 3 ? argv[3] : "threads,churn,fork";
  int threads = has(features, "threads"), churn = has(features, "churn"), forking = has(features, "fork"), late = has(features, "late"),
      forkloop = has(features, "forkloop");
  if (mib < 1) mib = 1;
  size_t size = (size_t)(mib * 1024 * 1024) / PAGE * PAGE;
  region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) {
    wl_fail("cannot map %zu bytes", size);
    for (;;) {
      status(0, mib);
      wl_sleep_ms(200);
    }
  }
  region_words = size / 8;
  hot_words = region_words / 16 ? region_words / 16 : 1;
  uint64_t rng = 0x1234567 ^ (uint64_t)getpid();
  for (size_t k = 0; k < region_words; k++) region[k] = wl_xorshift(&rng);
  uint64_t *anchor = map_anon(NULL, 32);
  if (anchor) {
    fresh(&slots[0], anchor, 32, 0xa5c0);
    for (size_t p = 0; p < 32; p++) write_page(&slots[0], p);
  }

  pid_t child = 0;
  double t0 = wl_mono();
  if (forking && !late) child = fork_child(&rng, argv[1]);
  if (threads) start_writers();
  double last = 0, last_fork = wl_mono();
  for (;;) {
    if (churn)
      for (int k = 0; k < 16; k++) churn_op(&rng);
    verify(0, "sweep");
    double now = wl_mono();
    if (forking && late && !forked && now - t0 > 1.0) {
      child = fork_child(&rng, argv[1]);
      if (child == 0 && threads) start_writers();
    }
    if (forkloop && child >= 0 && now - last_fork > 0.5 && strcmp(role, "parent") == 0) {
      last_fork = now;
      fork_check();
    }
    if (now - last > 0.05) {
      last = now;
      status(child, mib);
      if (child > 0) waitpid(child, NULL, WNOHANG);
    }
    wl_sleep_ms(1);
  }
}
