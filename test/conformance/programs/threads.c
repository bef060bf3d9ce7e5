/* Threads keep their ids, thread-local data and names; one waits on a condition variable and is woken after the restore. */
// build: -pthread
#include "conformance.h"
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define N 4
static __thread long tls_value;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go_flag, started;
static pid_t tids[N];
static long seen[N];

static void *worker(void *arg) {
  long i = (long)arg;
  tls_value = 1000 + i;
  tids[i] = (pid_t)syscall(SYS_gettid);
  char name[16];
  snprintf(name, sizeof name, "cf-worker-%ld", i);
  prctl(PR_SET_NAME, name);
  pthread_mutex_lock(&mu);
  started++;
  while (!go_flag) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  char now[16] = {0};
  prctl(PR_GET_NAME, now);
  seen[i] = ((pid_t)syscall(SYS_gettid) == tids[i] && tls_value == 1000 + i && strcmp(now, name) == 0) ? 1 : -1;
  return NULL;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  pthread_t th[N];
  for (long i = 0; i < N; i++) pthread_create(&th[i], NULL, worker, (void *)i);
  for (;;) {
    pthread_mutex_lock(&mu);
    int s = started;
    pthread_mutex_unlock(&mu);
    if (s == N) break;
    usleep(1000);
  }
  cf_ready();
  cf_wait_restored();
  pthread_mutex_lock(&mu);
  go_flag = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < N; i++) CF_CHECK(pthread_join(th[i], NULL) == 0, "thread %d: join failed", i);
  for (int i = 0; i < N; i++) CF_CHECK(seen[i] == 1, "thread %d (tid %d): id, TLS or name expected unchanged, got changed", i, tids[i]);
  cf_pass();
}
