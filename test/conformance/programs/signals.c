/* Signal state: every disposition (handler, flags, mask; ignored; default), the blocked mask, and
 * pending signals with their values, standard and real-time. SIGTRAP has a program of its own. */
#define _GNU_SOURCE
#include "conformance.h"
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>

struct ksa { uintptr_t handler; unsigned long flags; uintptr_t restorer; uint64_t mask; };

static void h1(int s) { (void)s; }
static void h2(int s, siginfo_t *i, void *c) { (void)s; (void)i; (void)c; }

static int kget(int sig, struct ksa *out) { return (int)syscall(SYS_rt_sigaction, sig, NULL, out, 8); }

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct ksa want[65];
  const unsigned long flagsets[] = {0, SA_RESTART, SA_SIGINFO, SA_SIGINFO | SA_ONSTACK, SA_NODEFER | SA_RESETHAND, SA_RESTART | SA_NOCLDSTOP};
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGTRAP || sig == 32 || sig == 33) continue;
    struct sigaction sa = {0};
    int kind = sig % 4; /* 0 default (set explicitly), 1 ignored, 2-3 caught */
    if (kind == 0) sa.sa_handler = SIG_DFL;
    else if (kind == 1) sa.sa_handler = SIG_IGN;
    else {
      sa.sa_flags = (int)flagsets[sig % 6];
      if (sa.sa_flags & SA_SIGINFO) sa.sa_sigaction = h2;
      else sa.sa_handler = h1;
      sigemptyset(&sa.sa_mask);
      for (int b = 1; b <= 64; b++)
        if ((b * 7 + sig) % 5 == 0 && b != SIGKILL && b != SIGSTOP && b != 32 && b != 33) sigaddset(&sa.sa_mask, b);
    }
    if (sigaction(sig, &sa, NULL) != 0) cf_fail("sigaction(%d): %s", sig, strerror(errno));
  }
  /* SIGINT and SIGQUIT default explicitly: whoever started us may have ignored them. */
  for (int sig = 1; sig <= 64; sig++) {
    memset(&want[sig], 0, sizeof want[sig]);
    if (sig != SIGKILL && sig != SIGSTOP) kget(sig, &want[sig]);
  }
  sigset_t block;
  sigemptyset(&block);
  int blocked[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGALRM, SIGRTMIN + 3, SIGRTMAX - 1, SIGCHLD};
  for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) sigaddset(&block, blocked[i]);
  sigprocmask(SIG_SETMASK, &block, NULL);
  union sigval v;
  v.sival_int = 101;
  sigqueue(getpid(), SIGRTMIN + 3, v);
  v.sival_int = 102;
  sigqueue(getpid(), SIGRTMIN + 3, v);
  v.sival_int = 7;
  sigqueue(getpid(), SIGUSR1, v);
  raise(SIGHUP);
  cf_ready();
  cf_wait_restored();
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGTRAP) continue;
    struct ksa got;
    memset(&got, 0, sizeof got);
    kget(sig, &got);
    CF_CHECK(got.handler == want[sig].handler, "signal %d (%s): handler expected %#lx, got %#lx", sig, strsignal(sig), (unsigned long)want[sig].handler, (unsigned long)got.handler);
    CF_CHECK(got.flags == want[sig].flags, "signal %d (%s): sa_flags expected %#lx, got %#lx", sig, strsignal(sig), want[sig].flags, got.flags);
    CF_CHECK(got.mask == want[sig].mask, "signal %d (%s): sa_mask expected %#lx, got %#lx", sig, strsignal(sig), (unsigned long)want[sig].mask, (unsigned long)got.mask);
  }
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == 32 || sig == 33) continue;
    CF_CHECK(sigismember(&now, sig) == sigismember(&block, sig), "blocked mask: signal %d expected %s, got %s", sig, sigismember(&block, sig) ? "blocked" : "unblocked", sigismember(&now, sig) ? "blocked" : "unblocked");
  }
  sigset_t pend, wantp;
  sigpending(&pend);
  sigemptyset(&wantp);
  sigaddset(&wantp, SIGRTMIN + 3);
  sigaddset(&wantp, SIGUSR1);
  sigaddset(&wantp, SIGHUP);
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == 32 || sig == 33) continue;
    CF_CHECK(sigismember(&pend, sig) == sigismember(&wantp, sig), "pending: signal %d expected %s, got %s", sig, sigismember(&wantp, sig) ? "pending" : "not pending", sigismember(&pend, sig) ? "pending" : "not pending");
  }
  struct timespec zero = {0, 0};
  siginfo_t si;
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, SIGRTMIN + 3);
  int vals[2];
  for (int i = 0; i < 2; i++) {
    CF_CHECK(sigtimedwait(&rt, &si, &zero) == SIGRTMIN + 3, "pending SIGRTMIN+3 #%d: expected queued, got %s", i + 1, strerror(errno));
    vals[i] = si.si_value.sival_int;
  }
  CF_CHECK(vals[0] == 101 && vals[1] == 102, "pending SIGRTMIN+3: values expected 101,102, got %d,%d", vals[0], vals[1]);
  CF_CHECK(sigtimedwait(&rt, &si, &zero) < 0, "pending SIGRTMIN+3: expected two queued, got a third");
  sigset_t u1;
  sigemptyset(&u1);
  sigaddset(&u1, SIGUSR1);
  CF_CHECK(sigtimedwait(&u1, &si, &zero) == SIGUSR1 && si.si_value.sival_int == 7 && si.si_pid == getpid(), "pending SIGUSR1: value 7 from pid %d expected, got value %d from pid %d", getpid(), si.si_value.sival_int, si.si_pid);
  cf_pass();
}
