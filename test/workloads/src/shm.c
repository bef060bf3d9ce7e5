/* shm: a parent and a forked child share a MAP_SHARED|MAP_ANONYMOUS region
 * and a memfd (mapped by the parent before fork and mapped a second time by
 * the child). The child updates both under a seqlock: counter, data words
 * derived from the counter, and a checksum. The parent reads consistent
 * snapshots and checks the checksum, that every data word matches the
 * counter, that counter == seq/2 and that the counter only grows; the child
 * checks the parent's heartbeat counter only grows and that its two mappings
 * of the memfd alias each other. Both verify their private (copy-on-write)
 * region: pages hold a pattern of the page index, the process role and a
 * generation that each process rewrites on its own copy. */
#include "wl_common.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SHARED_SIZE (1 << 20)
#define PRIV_PAGES 1024
#define PAGE 4096
#define FROZEN_PAGES 64 /* private pages never rewritten after fork (still shared copy-on-write) */
#define NWORDS 2048

struct shared {
  uint64_t seq;
  uint64_t counter;
  uint64_t checksum;
  uint64_t parent_heartbeat;
  int32_t child_pid;
  int32_t child_ok;
  char child_err[512];
  uint64_t data[NWORDS];
};

static uint64_t word_of(uint64_t counter, uint64_t i, uint64_t salt) { return wl_mix64(counter * NWORDS + i + salt); }

static void writer_update(volatile struct shared *s, uint64_t counter, uint64_t salt) {
  __atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELAXED); /* odd */
  __atomic_thread_fence(__ATOMIC_RELEASE);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < NWORDS; i++) {
    uint64_t w = word_of(counter, i, salt);
    s->data[i] = w;
    sum += w;
  }
  s->counter = counter;
  s->checksum = sum ^ counter;
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELAXED); /* even */
}

/* Returns 1 if a consistent snapshot was verified. */
static int reader_check(volatile struct shared *s, const char *what, uint64_t salt, uint64_t *last_counter) {
  static uint64_t copy[NWORDS];
  for (int tries = 0; tries < 100; tries++) {
    uint64_t s1 = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
    if (s1 & 1) continue;
    uint64_t counter = s->counter, checksum = s->checksum;
    for (int i = 0; i < NWORDS; i++) copy[i] = s->data[i];
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != s1) continue;
    if (counter != s1 / 2) {
      wl_fail("%s: counter %llu != seq/2 %llu", what, (unsigned long long)counter, (unsigned long long)(s1 / 2));
      return 0;
    }
    if (counter < *last_counter) {
      wl_fail("%s: counter went backwards from %llu to %llu", what, (unsigned long long)*last_counter,
              (unsigned long long)counter);
      return 0;
    }
    *last_counter = counter;
    if (counter == 0) return 1;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < NWORDS; i++) {
      if (copy[i] != word_of(counter, i, salt)) {
        wl_fail("%s: data word %llu is 0x%016llx, expected 0x%016llx for counter %llu", what, (unsigned long long)i,
                (unsigned long long)copy[i], (unsigned long long)word_of(counter, i, salt),
                (unsigned long long)counter);
        return 0;
      }
      sum += copy[i];
    }
    if ((sum ^ counter) != checksum) {
      wl_fail("%s: checksum mismatch at counter %llu", what, (unsigned long long)counter);
      return 0;
    }
    return 1;
  }
  return 0;
}

static uint64_t priv_word(uint64_t page, uint64_t j, int role, uint64_t gen) {
  return wl_mix64((page << 20) ^ (j << 4) ^ ((uint64_t)role << 60) ^ (gen << 40));
}

/* Private region: page p holds role/gen pattern; gens[] is kept elsewhere. */
static void priv_write(uint64_t *priv, uint32_t *gens, uint64_t p, int role, uint32_t gen) {
  uint64_t *w = priv + p * (PAGE / 8);
  gens[p] = gen;
  for (uint64_t j = 0; j < PAGE / 8; j++) w[j] = priv_word(p, j, role, gen);
}

static void priv_verify(const uint64_t *priv, const uint32_t *gens, const int *roles, const char *who) {
  for (uint64_t p = 0; p < PRIV_PAGES; p++) {
    const uint64_t *w = priv + p * (PAGE / 8);
    for (uint64_t j = 0; j < PAGE / 8; j++)
      if (w[j] != priv_word(p, j, roles[p], gens[p])) {
        wl_fail("%s: private page %llu word %llu is 0x%016llx, expected 0x%016llx", who, (unsigned long long)p,
                (unsigned long long)j, (unsigned long long)w[j],
                (unsigned long long)priv_word(p, j, roles[p], gens[p]));
        return;
      }
  }
}

int main(int argc, char **argv) {
  wl_init("shm", argc, argv);
  char child_status[4200];
  snprintf(child_status, sizeof child_status, "%s.child", wl_path);
  struct shared *anon = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int mfd = memfd_create("ferry-shm", 0);
  if (anon == MAP_FAILED || mfd < 0 || ftruncate(mfd, SHARED_SIZE) != 0) return 1;
  struct shared *mem = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  uint64_t *priv = mmap(NULL, (size_t)PRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED || priv == MAP_FAILED) return 1;
  static uint32_t gens[PRIV_PAGES];
  static int roles[PRIV_PAGES];
  for (uint64_t p = 0; p < PRIV_PAGES; p++) priv_write(priv, gens, p, 0, 0); /* shared COW pattern, role 0 */
  pid_t parent = getpid();

  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pid_t me = getpid();
    struct shared *mem2 = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (mem2 == MAP_FAILED) wl_fail("child: second memfd mapping failed");
    anon->child_pid = me;
    anon->child_ok = 1;
    uint64_t counter = 0, last_hb = 0, round = 0, seed = 42;
    double last_status = 0;
    for (;; round++) {
      counter++;
      writer_update(anon, counter, 0x1111);
      writer_update(mem, counter, 0x2222);
      if (mem2 != MAP_FAILED && mem2->counter != counter)
        wl_fail("child: memfd second mapping shows counter %llu, first mapping %llu",
                (unsigned long long)mem2->counter, (unsigned long long)counter);
      uint64_t hb = __atomic_load_n(&anon->parent_heartbeat, __ATOMIC_ACQUIRE);
      if (hb < last_hb)
        wl_fail("child: parent heartbeat went backwards from %llu to %llu", (unsigned long long)last_hb,
                (unsigned long long)hb);
      last_hb = hb;
      if (getppid() != parent) wl_fail("child: getppid() changed from %d to %d", (int)parent, (int)getppid());
      if (getpid() != me) wl_fail("child: getpid() changed");
      /* child's own copy-on-write pages: role 2 */
      for (int k = 0; k < 4; k++) {
        uint64_t p = FROZEN_PAGES + wl_xorshift(&seed) % (PRIV_PAGES - FROZEN_PAGES);
        roles[p] = 2;
        priv_write(priv, gens, p, 2, gens[p] + 1);
      }
      if (round % 20 == 0) priv_verify(priv, gens, roles, "child");
      if (!wl_ok() && anon->child_ok) {
        snprintf(anon->child_err, sizeof anon->child_err, "%.500s", wl_err);
        __atomic_store_n(&anon->child_ok, 0, __ATOMIC_RELEASE);
      }
      double now = wl_mono();
      if (now - last_status > 0.05) {
        last_status = now;
        wl_write_status_to(child_status, "shm-child", counter, wl_ok(), wl_err, "\"role\":\"child\"");
      }
      wl_sleep_ms(2);
    }
  }

  uint64_t last_anon = 0, last_mem = 0, checks = 0, seed = 7, round = 0;
  double last_status = 0;
  for (;; round++) {
    __atomic_add_fetch(&anon->parent_heartbeat, 1, __ATOMIC_RELEASE);
    if (reader_check(anon, "shared anon region", 0x1111, &last_anon)) checks++;
    if (reader_check(mem, "memfd region", 0x2222, &last_mem)) checks++;
    if (!__atomic_load_n(&anon->child_ok, __ATOMIC_ACQUIRE) && anon->child_pid)
      wl_fail("child reported: %s", anon->child_err);
    for (int k = 0; k < 4; k++) {
      uint64_t p = FROZEN_PAGES + wl_xorshift(&seed) % (PRIV_PAGES - FROZEN_PAGES);
      roles[p] = 1;
      priv_write(priv, gens, p, 1, gens[p] + 1);
    }
    if (round % 20 == 0) priv_verify(priv, gens, roles, "parent");
    struct stat st;
    if (fstat(mfd, &st) != 0 || st.st_size != SHARED_SIZE)
      wl_fail("memfd size changed to %lld", (long long)st.st_size);
    char link[256], target[256];
    snprintf(link, sizeof link, "/proc/self/fd/%d", mfd);
    ssize_t tl = readlink(link, target, sizeof target - 1);
    if (tl < 0 || (target[tl] = 0, strncmp(target, "/memfd:ferry-shm", 16) != 0))
      wl_fail("fd %d is no longer the memfd (%s)", mfd, tl < 0 ? "unreadable" : target);
    int stt;
    if (waitpid(child, &stt, WNOHANG) > 0) wl_fail("child %d exited (status 0x%x)", (int)child, stt);
    if (getpid() != parent) wl_fail("getpid() changed");
    double now = wl_mono();
    if (now - last_status > 0.05) {
      last_status = now;
      wl_status(last_anon + last_mem,
                "\"pids\":[%d,%d],\"child_pid\":%d,\"anon_counter\":%llu,\"memfd_counter\":%llu,\"snapshots_verified\":%llu,"
                "\"shared_addr\":\"%p\",\"memfd_addr\":\"%p\",\"private_addr\":\"%p\",\"private_pages\":%d,"
                "\"frozen_private_pages\":%d,\"page_size\":%d",
                (int)parent, (int)child, (int)child, (unsigned long long)last_anon, (unsigned long long)last_mem,
                (unsigned long long)checks, (void *)anon, (void *)mem, (void *)priv, PRIV_PAGES, FROZEN_PAGES, PAGE);
    }
    wl_sleep_ms(5);
  }
}
