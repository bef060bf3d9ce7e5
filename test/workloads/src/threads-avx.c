/* threads-avx: 4 worker threads + main.
 * Invariants (per worker): thread-specific values kept in ymm8-ymm15 across a
 * long inline-asm loop are intact; an AVX2 accumulator matches its scalar
 * model; the thread-local counter matches a stack counter and its address
 * (fs base) is unchanged; gettid() is unchanged; the per-thread signal mask is
 * unchanged; a mutex+condvar token passes round-robin with gap-free sequence
 * numbers. Main: getpid()/gettid() unchanged; helper threads created and
 * joined periodically return the right result. */
#include "wl_common.h"
#include <immintrin.h>
#include <pthread.h>
#include <signal.h>

#define NW 4
#define CHUNK_ITERS (1u << 22)

struct worker {
  int idx;
  pthread_t th;
  pid_t tid;
  uint64_t chunks;   /* atomic */
  uint64_t handoffs; /* atomic */
};

static struct worker workers[NW];
static pthread_mutex_t tok_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tok_c = PTHREAD_COND_INITIALIZER;
static int tok_turn;
static uint64_t tok_seq;
static __thread uint64_t tls_counter;

/* Load pat[0..31] into ymm8..ymm15, spin `iters` times doing net-identity
 * arithmetic on them with a changing delta, then store them to out. */
static void avx_hold(const uint64_t *pat, uint64_t *out, uint64_t iters) {
  __asm__ volatile(
      "vmovdqu 0(%[p]), %%ymm8\n\t"
      "vmovdqu 32(%[p]), %%ymm9\n\t"
      "vmovdqu 64(%[p]), %%ymm10\n\t"
      "vmovdqu 96(%[p]), %%ymm11\n\t"
      "vmovdqu 128(%[p]), %%ymm12\n\t"
      "vmovdqu 160(%[p]), %%ymm13\n\t"
      "vmovdqu 192(%[p]), %%ymm14\n\t"
      "vmovdqu 224(%[p]), %%ymm15\n\t"
      "vpcmpeqq %%ymm7, %%ymm7, %%ymm7\n\t" /* all ones = -1 per lane */
      "vmovdqu 0(%[p]), %%ymm6\n\t"
      "1:\n\t"
      "vpaddq %%ymm6, %%ymm8, %%ymm8\n\t"
      "vpaddq %%ymm6, %%ymm9, %%ymm9\n\t"
      "vpaddq %%ymm6, %%ymm10, %%ymm10\n\t"
      "vpaddq %%ymm6, %%ymm11, %%ymm11\n\t"
      "vpxor %%ymm6, %%ymm12, %%ymm12\n\t"
      "vpxor %%ymm6, %%ymm13, %%ymm13\n\t"
      "vpxor %%ymm6, %%ymm14, %%ymm14\n\t"
      "vpxor %%ymm6, %%ymm15, %%ymm15\n\t"
      "vpsubq %%ymm6, %%ymm8, %%ymm8\n\t"
      "vpsubq %%ymm6, %%ymm9, %%ymm9\n\t"
      "vpsubq %%ymm6, %%ymm10, %%ymm10\n\t"
      "vpsubq %%ymm6, %%ymm11, %%ymm11\n\t"
      "vpxor %%ymm6, %%ymm12, %%ymm12\n\t"
      "vpxor %%ymm6, %%ymm13, %%ymm13\n\t"
      "vpxor %%ymm6, %%ymm14, %%ymm14\n\t"
      "vpxor %%ymm6, %%ymm15, %%ymm15\n\t"
      "vpsubq %%ymm7, %%ymm6, %%ymm6\n\t" /* delta += 1 */
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vmovdqu %%ymm8, 0(%[o])\n\t"
      "vmovdqu %%ymm9, 32(%[o])\n\t"
      "vmovdqu %%ymm10, 64(%[o])\n\t"
      "vmovdqu %%ymm11, 96(%[o])\n\t"
      "vmovdqu %%ymm12, 128(%[o])\n\t"
      "vmovdqu %%ymm13, 160(%[o])\n\t"
      "vmovdqu %%ymm14, 192(%[o])\n\t"
      "vmovdqu %%ymm15, 224(%[o])\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(iters)
      : [p] "r"(pat), [o] "r"(out)
      : "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  pid_t tid = wl_gettid();
  __atomic_store_n(&w->tid, tid, __ATOMIC_RELEASE);
  void *tls_addr = (void *)&tls_counter;
  uint64_t stack_counter = 0;
  uint64_t last_seq = 0;
  int have_seq = 0;

  sigset_t mine, cur;
  sigemptyset(&mine);
  sigaddset(&mine, SIGRTMIN + 2 + w->idx);
  sigaddset(&mine, SIGUSR2);
  pthread_sigmask(SIG_SETMASK, &mine, NULL);

  uint64_t pat[32] __attribute__((aligned(32)));
  uint64_t out[32] __attribute__((aligned(32)));
  uint64_t seed = wl_mix64(0xA5A5000000000000ULL + (uint64_t)w->idx * 0x1000193ULL + (uint64_t)tid);
  __m256i acc = _mm256_set_epi64x((long long)seed, (long long)(seed ^ 1), (long long)(seed ^ 2), (long long)(seed ^ 3));
  const __m256i inc = _mm256_set_epi64x(1, 3, 5, (long long)(7 + w->idx));
  uint64_t model[4] = {seed ^ 3, seed ^ 2, seed ^ 1, seed}; /* lane 0 .. lane 3 */
  const uint64_t model_inc[4] = {(uint64_t)(7 + w->idx), 5, 3, 1};

  for (uint64_t round = 0;; round++) {
    for (int i = 0; i < 32; i++) pat[i] = wl_mix64(seed + round * 32 + (uint64_t)i);
    avx_hold(pat, out, CHUNK_ITERS);
    for (int r = 0; r < 8; r++)
      for (int l = 0; l < 4; l++)
        if (out[r * 4 + l] != pat[r * 4 + l])
          wl_fail("thread %d (tid %d): ymm%d lane %d is 0x%016llx, expected 0x%016llx after the asm loop", w->idx,
                  (int)tid, 8 + r, l, (unsigned long long)out[r * 4 + l], (unsigned long long)pat[r * 4 + l]);

    acc = _mm256_add_epi64(acc, inc);
    for (int l = 0; l < 4; l++) model[l] += model_inc[l];
    uint64_t got[4] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)got, acc);
    for (int l = 0; l < 4; l++)
      if (got[l] != model[l])
        wl_fail("thread %d: AVX2 accumulator lane %d is 0x%016llx, expected 0x%016llx", w->idx, l,
                (unsigned long long)got[l], (unsigned long long)model[l]);

    tls_counter++;
    stack_counter++;
    if (tls_counter != stack_counter)
      wl_fail("thread %d: thread-local counter %llu != stack counter %llu", w->idx, (unsigned long long)tls_counter,
              (unsigned long long)stack_counter);
    if ((void *)&tls_counter != tls_addr)
      wl_fail("thread %d: thread-local storage moved from %p to %p (fs base changed)", w->idx, tls_addr,
              (void *)&tls_counter);
    pid_t now_tid = wl_gettid();
    if (now_tid != tid) wl_fail("thread %d: gettid() changed from %d to %d", w->idx, (int)tid, (int)now_tid);
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    for (int s = 1; s < SIGRTMAX; s++)
      if (sigismember(&cur, s) != sigismember(&mine, s)) {
        wl_fail("thread %d: signal mask changed for signal %d", w->idx, s);
        break;
      }
    __atomic_store_n(&w->chunks, stack_counter, __ATOMIC_RELEASE);

    /* token handoff */
    pthread_mutex_lock(&tok_m);
    while (tok_turn != w->idx) {
      struct timespec dl;
      clock_gettime(CLOCK_REALTIME, &dl);
      dl.tv_sec += 1;
      pthread_cond_timedwait(&tok_c, &tok_m, &dl);
    }
    uint64_t s = tok_seq;
    if (s % NW != (uint64_t)w->idx)
      wl_fail("thread %d: token sequence %llu does not belong to this thread", w->idx, (unsigned long long)s);
    else if (have_seq && s != last_seq + NW)
      wl_fail("thread %d: token sequence jumped from %llu to %llu", w->idx, (unsigned long long)last_seq,
              (unsigned long long)s);
    last_seq = s;
    have_seq = 1;
    tok_seq = s + 1;
    tok_turn = (w->idx + 1) % NW;
    pthread_cond_broadcast(&tok_c);
    pthread_mutex_unlock(&tok_m);
    __atomic_add_fetch(&w->handoffs, 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

struct helper_arg {
  uint64_t seed;
  uint64_t result;
  pid_t tid;
};

static uint64_t helper_work(uint64_t seed) {
  uint64_t s = 0;
  for (uint64_t k = 0; k < 20000; k++) s += wl_mix64(k ^ seed);
  return s;
}

static void *helper_main(void *arg) {
  struct helper_arg *h = arg;
  h->tid = wl_gettid();
  h->result = helper_work(h->seed);
  return NULL;
}

int main(int argc, char **argv) {
  wl_init("threads-avx", argc, argv);
  pid_t pid = getpid();
  tok_turn = 0;
  tok_seq = 0;
  for (int i = 0; i < NW; i++) {
    workers[i].idx = i;
    pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
  }
  pid_t tids[NW] = {0};
  uint64_t helpers = 0;
  double last_helper = 0;
  for (;;) {
    if (getpid() != pid) wl_fail("main: getpid() changed from %d to %d", (int)pid, (int)getpid());
    if (wl_gettid() != pid) wl_fail("main: gettid() %d != pid %d", (int)wl_gettid(), (int)pid);
    for (int i = 0; i < NW; i++) {
      pid_t t = __atomic_load_n(&workers[i].tid, __ATOMIC_ACQUIRE);
      if (tids[i] == 0) tids[i] = t;
      else if (t != tids[i]) wl_fail("main: worker %d tid changed from %d to %d", i, (int)tids[i], (int)t);
    }
    double now = wl_mono();
    if (now - last_helper > 0.2) {
      last_helper = now;
      struct helper_arg ha[2];
      pthread_t ht[2];
      for (int k = 0; k < 2; k++) {
        ha[k].seed = helpers * 2 + (uint64_t)k;
        ha[k].result = 0;
        ha[k].tid = 0;
        if (pthread_create(&ht[k], NULL, helper_main, &ha[k]) != 0) wl_fail("main: pthread_create failed");
      }
      for (int k = 0; k < 2; k++) {
        void *ret;
        if (pthread_join(ht[k], &ret) != 0) wl_fail("main: pthread_join failed");
        if (ha[k].result != helper_work(ha[k].seed))
          wl_fail("main: helper thread %llu returned a wrong result", (unsigned long long)ha[k].seed);
        if (ha[k].tid <= 0 || ha[k].tid == pid) wl_fail("main: helper thread had tid %d", (int)ha[k].tid);
        for (int i = 0; i < NW; i++)
          if (ha[k].tid == tids[i]) wl_fail("main: helper thread tid %d equals worker %d's tid", (int)ha[k].tid, i);
      }
      helpers += 2;
    }
    uint64_t total = 0;
    char threads[1024];
    size_t off = 0;
    threads[0] = 0;
    for (int i = 0; i < NW; i++) {
      uint64_t c = __atomic_load_n(&workers[i].chunks, __ATOMIC_ACQUIRE);
      uint64_t h = __atomic_load_n(&workers[i].handoffs, __ATOMIC_ACQUIRE);
      total += c;
      off += (size_t)snprintf(threads + off, sizeof threads - off, "%s{\"index\":%d,\"tid\":%d,\"chunks\":%llu,\"handoffs\":%llu}",
                              i ? "," : "", i, (int)tids[i], (unsigned long long)c, (unsigned long long)h);
    }
    pthread_mutex_lock(&tok_m);
    uint64_t seq = tok_seq;
    pthread_mutex_unlock(&tok_m);
    wl_status(total, "\"threads\":[%s],\"token_seq\":%llu,\"helpers_joined\":%llu,\"pids\":[%d],\"token_seq_addr\":\"%p\"", threads,
              (unsigned long long)seq, (unsigned long long)helpers, (int)pid, (void *)&tok_seq);
    wl_sleep_ms(50);
  }
}
