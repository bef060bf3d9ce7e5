/* Per-thread signal state: each thread's blocked mask, a signal pending for one thread only, its alternate stack. */
// build: -pthread
#include "conformance.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

static pthread_barrier_t bar;
static volatile int go_flag;
static char altmem[2][65536];
static char verdict[2][512];

static void *worker(void *arg) {
  long i = (long)arg;
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  sigaddset(&m, i ? SIGRTMIN + 5 : SIGWINCH);
  pthread_sigmask(SIG_SETMASK, &m, NULL);
  stack_t ss = {.ss_sp = altmem[i], .ss_size = sizeof altmem[i], .ss_flags = 0};
  sigaltstack(&ss, NULL);
  pthread_barrier_wait(&bar);
  while (!go_flag) usleep(1000);
  sigset_t now, pend;
  pthread_sigmask(SIG_SETMASK, NULL, &now);
  sigpending(&pend);
  stack_t got;
  sigaltstack(NULL, &got);
  if (!sigismember(&now, SIGUSR1) || !sigismember(&now, i ? SIGRTMIN + 5 : SIGWINCH) || sigismember(&now, i ? SIGWINCH : SIGRTMIN + 5))
    snprintf(verdict[i], sizeof verdict[i], "thread %ld: blocked mask expected SIGUSR1+%s, got another", i, i ? "SIGRTMIN+5" : "SIGWINCH");
  else if (sigismember(&pend, SIGUSR1) != (i == 1))
    snprintf(verdict[i], sizeof verdict[i], "thread %ld: SIGUSR1 expected %s, got %s", i, i ? "pending" : "not pending", sigismember(&pend, SIGUSR1) ? "pending" : "not pending");
  else if (got.ss_sp != altmem[i] || got.ss_size != sizeof altmem[i])
    snprintf(verdict[i], sizeof verdict[i], "thread %ld: sigaltstack expected %p/%zu, got %p/%zu", i, (void *)altmem[i], sizeof altmem[i], got.ss_sp, got.ss_size);
  else snprintf(verdict[i], sizeof verdict[i], "ok");
  return NULL;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  sigset_t all;
  sigemptyset(&all);
  sigaddset(&all, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_barrier_init(&bar, NULL, 3);
  pthread_t th[2];
  for (long i = 0; i < 2; i++) pthread_create(&th[i], NULL, worker, (void *)i);
  pthread_barrier_wait(&bar);
  pthread_kill(th[1], SIGUSR1);
  cf_ready();
  cf_wait_restored();
  go_flag = 1;
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++) CF_CHECK(strcmp(verdict[i], "ok") == 0, "%s", verdict[i]);
  sigset_t pend;
  sigpending(&pend);
  CF_CHECK(!sigismember(&pend, SIGUSR1), "main thread: SIGUSR1 expected not pending, got pending");
  cf_pass();
}
