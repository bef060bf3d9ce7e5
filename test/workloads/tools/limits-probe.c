/* limits-probe STATUS: a CPU-bound loop that tests its own resource limits on request.
 *
 * Every ~50 ms it rewrites STATUS (atomically) with
 *   {"pid","progress","done","forked","forkErrno","alloc"}
 * and reads <dir of STATUS>/cmd, one line "SEQ fork N" or "SEQ alloc MIB". A command runs once
 * (when SEQ is new) and its result lands in the status with done=SEQ:
 *   fork N     forks up to N children that wait, counts how many forks succeeded before one
 *              failed (forkErrno: its errno), then ends and reaps them;
 *   alloc MIB  a child allocates MIB MiB and writes every page; alloc = "exit:0" when it could,
 *              "exit:3" when malloc failed, "signal:9" when the kernel killed it (OOM).
 * Between commands it spins, so a CPU quota throttles it. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char status_path[4096], cmd_path[4096];
static unsigned long long progress;
static long done = 0, forked = -1;
static int fork_errno = 0;
static char alloc_result[64] = "none";

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_status(void) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", status_path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "{\"pid\":%d,\"progress\":%llu,\"done\":%ld,\"forked\":%ld,\"forkErrno\":%d,\"alloc\":\"%s\"}\n", (int)getpid(), progress, done, forked,
          fork_errno, alloc_result);
  if (fclose(f) == 0) rename(tmp, status_path);
}

static void try_forks(long n) {
  pid_t *kids = calloc((size_t)n, sizeof(pid_t));
  long k = 0;
  fork_errno = 0;
  for (; k < n; k++) {
    pid_t p = fork();
    if (p == 0) {
      pause();
      _exit(0);
    }
    if (p < 0) {
      fork_errno = errno;
      break;
    }
    kids[k] = p;
  }
  forked = k;
  for (long i = 0; i < k; i++) kill(kids[i], SIGKILL);
  for (long i = 0; i < k; i++) waitpid(kids[i], NULL, 0);
  free(kids);
}

static void try_alloc(long mib) {
  pid_t p = fork();
  if (p < 0) {
    snprintf(alloc_result, sizeof alloc_result, "fork-failed:%d", errno);
    return;
  }
  if (p == 0) {
    size_t len = (size_t)mib << 20;
    char *m = malloc(len);
    if (!m) _exit(3);
    for (size_t i = 0; i < len; i += 4096) m[i] = (char)(i | 1);
    _exit(0);
  }
  int st = 0;
  waitpid(p, &st, 0);
  if (WIFSIGNALED(st)) snprintf(alloc_result, sizeof alloc_result, "signal:%d", WTERMSIG(st));
  else snprintf(alloc_result, sizeof alloc_result, "exit:%d", WEXITSTATUS(st));
}

static void poll_cmd(void) {
  FILE *f = fopen(cmd_path, "r");
  if (!f) return;
  long seq = 0, arg = 0;
  char what[16] = "";
  int n = fscanf(f, "%ld %15s %ld", &seq, what, &arg);
  fclose(f);
  if (n != 3 || seq <= done) return;
  if (strcmp(what, "fork") == 0) try_forks(arg);
  else if (strcmp(what, "alloc") == 0) try_alloc(arg);
  done = seq;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  snprintf(status_path, sizeof status_path, "%s", argv[1]);
  snprintf(cmd_path, sizeof cmd_path, "%s", argv[1]);
  char *slash = strrchr(cmd_path, '/');
  snprintf(slash ? slash + 1 : cmd_path, sizeof cmd_path - (size_t)(slash ? slash + 1 - cmd_path : 0), "cmd");
  volatile unsigned long long sink = 0;
  double next = 0;
  for (;;) {
    for (int i = 0; i < 100000; i++) sink += (unsigned long long)i * 2654435761u;
    progress++;
    double now = mono();
    if (now >= next) {
      poll_cmd();
      write_status();
      next = now + 0.05;
    }
  }
}
