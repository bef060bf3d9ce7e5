/* openmp: parallel reductions (4 OpenMP threads) with a closed-form result
 * per iteration: integer sum, xor, max, and a double sum of integers (exact).
 * Also: every OpenMP thread keeps its own FPU/SSE rounding mode (set once,
 * thread-specific) and its own thread-local counter; both must be unchanged
 * / consistent on every iteration, and the team's thread ids (gettid) must
 * stay the same. */
#include "wl_common.h"
#include <fenv.h>
#include <omp.h>

#define NT 4
#define N 2000000ULL

static __thread uint64_t tl_iters;
static pid_t team_tids[NT];
static int team_modes[NT];
static const int modes[NT] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};

int main(int argc, char **argv) {
  wl_init("openmp", argc, argv);
  omp_set_dynamic(0);
  omp_set_num_threads(NT);
  pid_t pid = getpid();
  uint64_t iter = 0;
  double last_status = 0;
  uint64_t per_thread[NT];
  memset(per_thread, 0, sizeof per_thread);
#pragma omp parallel num_threads(NT)
  {
    int t = omp_get_thread_num();
    team_tids[t] = wl_gettid();
    fesetround(modes[t]);
    team_modes[t] = fegetround();
  }
  for (;; iter++) {
    uint64_t a = iter % 1000 + 1;
    uint64_t sum = 0, xr = 0, mx = 0;
    double dsum = 0;
    uint64_t counted[NT] = {0};
    int team = 0;
#pragma omp parallel num_threads(NT) reduction(+ : sum, dsum) reduction(^ : xr) reduction(max : mx)
    {
      int t = omp_get_thread_num();
      if (t == 0) team = omp_get_num_threads();
      if (wl_gettid() != team_tids[t])
        wl_fail("OpenMP thread %d: tid changed from %d to %d", t, (int)team_tids[t], (int)wl_gettid());
      if (fegetround() != team_modes[t])
        wl_fail("OpenMP thread %d: rounding mode changed from 0x%x to 0x%x", t, team_modes[t], fegetround());
      tl_iters++;
      if (tl_iters != iter + 1)
        wl_fail("OpenMP thread %d: thread-local iteration counter %llu, expected %llu", t,
                (unsigned long long)tl_iters, (unsigned long long)(iter + 1));
      uint64_t c = 0;
#pragma omp for schedule(static)
      for (uint64_t i = 0; i < N; i++) {
        uint64_t v = i * a + iter;
        sum += v;
        xr ^= i;
        if (v > mx) mx = v;
        dsum += (double)(i & 1023);
        c++;
      }
      counted[t] = c;
    }
    uint64_t want_sum = a * (N * (N - 1) / 2) + iter * N;
    /* xor of 0..N-1 */
    uint64_t m = (N - 1) % 4, want_xor = m == 0 ? N - 1 : m == 1 ? 1 : m == 2 ? N : 0;
    uint64_t want_max = (N - 1) * a + iter;
    uint64_t full = N / 1024, rest = N % 1024;
    double want_dsum = (double)full * (1023.0 * 1024.0 / 2.0) + (double)(rest * (rest ? rest - 1 : 0) / 2);
    if (team != NT) wl_fail("iteration %llu: team of %d threads, expected %d", (unsigned long long)iter, team, NT);
    if (sum != want_sum)
      wl_fail("iteration %llu: sum reduction %llu, expected %llu", (unsigned long long)iter, (unsigned long long)sum,
              (unsigned long long)want_sum);
    if (xr != want_xor)
      wl_fail("iteration %llu: xor reduction 0x%llx, expected 0x%llx", (unsigned long long)iter,
              (unsigned long long)xr, (unsigned long long)want_xor);
    if (mx != want_max)
      wl_fail("iteration %llu: max reduction %llu, expected %llu", (unsigned long long)iter, (unsigned long long)mx,
              (unsigned long long)want_max);
    if (dsum != want_dsum)
      wl_fail("iteration %llu: double sum reduction %.1f, expected %.1f", (unsigned long long)iter, dsum, want_dsum);
    uint64_t total = 0;
    for (int t = 0; t < NT; t++) {
      total += counted[t];
      per_thread[t] += counted[t];
    }
    if (total != N) wl_fail("iteration %llu: threads covered %llu of %llu indices", (unsigned long long)iter,
                            (unsigned long long)total, N);
    if (getpid() != pid) wl_fail("getpid() changed");
    double now = wl_mono();
    if (now - last_status > 0.05) {
      last_status = now;
      wl_status(iter + 1, "\"pids\":[%d],\"iterations\":%llu,\"team_tids\":[%d,%d,%d,%d],\"last_sum\":%llu,\"team_tids_addr\":\"%p\"", (int)pid,
                (unsigned long long)(iter + 1), team_tids[0], team_tids[1], team_tids[2], team_tids[3],
                (unsigned long long)sum, (void *)team_tids);
    }
    wl_sleep_ms(10);
  }
}
