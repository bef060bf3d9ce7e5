/* clocks: CLOCK_MONOTONIC and CLOCK_BOOTTIME never go backwards and never
 * jump by more than a threshold (argv[2] seconds, default 5) between
 * consecutive readings (taken every ~10 ms). An ITIMER_REAL (50 ms, SIGALRM)
 * and a POSIX timer (timer_create CLOCK_MONOTONIC, 10 ms, SIGRTMIN, overruns
 * counted) must track elapsed monotonic time: never more ticks than time
 * allows, and no large loss in windows without a freeze gap (> 1 s between
 * readings). Every SIGRTMIN must come from the timer (si_code SI_TIMER, the
 * timer's sigev_value) and both timers keep their intervals. */
#include "wl_common.h"
#include <signal.h>
#include <sys/time.h>

#define POSIX_NS 10000000LL
#define ITIMER_US 50000
#define GAP_S 1.0

static volatile uint64_t alrm_ticks, rt_ticks, rt_foreign;
static volatile int rt_bad_code, rt_bad_pid, rt_bad_value;
#define TIMER_COOKIE 0x7e57

static void on_alrm(int sig) {
  (void)sig;
  alrm_ticks++;
}

static void on_rt(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  if (si->si_code != SI_TIMER) {
    if (!rt_foreign) {
      rt_bad_code = si->si_code;
      rt_bad_pid = si->si_pid;
    }
    rt_foreign++;
    return;
  }
  if (si->si_value.sival_int != TIMER_COOKIE) rt_bad_value = si->si_value.sival_int ? si->si_value.sival_int : -1;
  rt_ticks += 1 + (uint64_t)(si->si_overrun > 0 ? si->si_overrun : 0);
}

struct tracker {
  const char *name;
  double interval;
  uint64_t base;     /* ticks at window start */
  double win_start;  /* window start */
};

static void check_ticks(struct tracker *t, uint64_t ticks, double now, double start, int gap) {
  double total_allowed = (now - start) / t->interval + 3;
  if ((double)ticks > total_allowed)
    wl_fail("%s: %llu ticks after %.3f s, at most %.0f possible", t->name, (unsigned long long)ticks, now - start,
            total_allowed);
  if (gap) {
    t->base = ticks;
    t->win_start = now;
    return;
  }
  double win = now - t->win_start;
  if (win > 2.0) {
    double expected = win / t->interval;
    double got = (double)(ticks - t->base);
    if (got < expected * 0.5 - 3)
      wl_fail("%s: only %.0f ticks in %.2f s without a freeze gap (expected about %.0f)", t->name, got, win, expected);
    t->base = ticks;
    t->win_start = now;
  }
}

int main(int argc, char **argv) {
  wl_init("clocks", argc, argv);
  double threshold = argc > 2 ? atof(argv[2]) : 5.0;
  if (threshold <= 0) threshold = 5.0;
  pid_t pid = getpid();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alrm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_rt;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGRTMIN, &sa, NULL);

  timer_t tid;
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGRTMIN;
  sev.sigev_value.sival_int = TIMER_COOKIE;
  if (timer_create(CLOCK_MONOTONIC, &sev, &tid) != 0) return 1;
  double start = wl_mono();
  double bstart = wl_now(CLOCK_BOOTTIME);
  struct itimerspec its = {{0, POSIX_NS}, {0, POSIX_NS}};
  timer_settime(tid, 0, &its, NULL);
  struct itimerval itv = {{0, ITIMER_US}, {0, ITIMER_US}};
  setitimer(ITIMER_REAL, &itv, NULL);

  struct tracker ta = {"ITIMER_REAL", ITIMER_US / 1e6, 0, start};
  struct tracker tr = {"POSIX timer", POSIX_NS / 1e9, 0, start};
  double last_m = start, last_b = bstart, max_jump_m = 0, max_jump_b = 0, last_status = 0;
  uint64_t readings = 0, gaps = 0;

  for (;;) {
    wl_sleep_ms(10);
    double m = wl_mono(), b = wl_now(CLOCK_BOOTTIME);
    readings++;
    double dm = m - last_m, db = b - last_b;
    if (dm < 0) wl_fail("CLOCK_MONOTONIC went backwards by %.6f s", -dm);
    if (db < 0) wl_fail("CLOCK_BOOTTIME went backwards by %.6f s", -db);
    if (dm > threshold) wl_fail("CLOCK_MONOTONIC jumped by %.3f s (threshold %.3f s)", dm, threshold);
    if (db > threshold) wl_fail("CLOCK_BOOTTIME jumped by %.3f s (threshold %.3f s)", db, threshold);
    if (dm > max_jump_m) max_jump_m = dm;
    if (db > max_jump_b) max_jump_b = db;
    last_m = m;
    last_b = b;
    int gap = dm > GAP_S;
    if (gap) gaps++;

    uint64_t a = alrm_ticks, r = rt_ticks;
    check_ticks(&ta, a, m, start, gap);
    check_ticks(&tr, r, m, start, gap);
    if (rt_foreign)
      wl_fail("SIGRTMIN not from the POSIX timer: si_code %d from pid %d (%llu such signals)", rt_bad_code, rt_bad_pid,
              (unsigned long long)rt_foreign);
    if (rt_bad_value) wl_fail("POSIX timer signal carried sigev_value %d, expected %d", rt_bad_value, TIMER_COOKIE);

    if (m - last_status > 0.05) {
      last_status = m;
      struct itimerspec cur;
      if (timer_gettime(tid, &cur) != 0) wl_fail("timer_gettime failed: %s", strerror(errno));
      else if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != POSIX_NS)
        wl_fail("POSIX timer interval changed to %lld.%09ld s", (long long)cur.it_interval.tv_sec,
                cur.it_interval.tv_nsec);
      struct itimerval ci;
      getitimer(ITIMER_REAL, &ci);
      if (ci.it_interval.tv_sec != 0 || ci.it_interval.tv_usec != ITIMER_US)
        wl_fail("ITIMER_REAL interval changed to %lld.%06ld s", (long long)ci.it_interval.tv_sec,
                (long)ci.it_interval.tv_usec);
      if (getpid() != pid) wl_fail("getpid() changed from %d to %d", (int)pid, (int)getpid());
      wl_status(readings,
                "\"pids\":[%d],\"threshold_s\":%.3f,\"elapsed_s\":%.3f,\"boottime_elapsed_s\":%.3f,"
                "\"max_jump_monotonic_ms\":%.3f,\"max_jump_boottime_ms\":%.3f,\"freeze_gaps\":%llu,"
                "\"itimer_ticks\":%llu,\"posix_timer_ticks\":%llu,\"foreign_rt_signals\":%llu,\"rt_signal\":%d",
                (int)pid, threshold, m - start, b - bstart, max_jump_m * 1000, max_jump_b * 1000,
                (unsigned long long)gaps, (unsigned long long)a, (unsigned long long)r,
                (unsigned long long)rt_foreign, SIGRTMIN);
    }
  }
}
