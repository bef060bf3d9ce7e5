/* Shared helpers for ferry's self-checking workloads.
 *
 * Every workload rewrites its status file atomically (tmp file in the same
 * directory, then rename) with one JSON line:
 *   {"name":..., "pid":..., "progress":..., "ok":..., "error":..., <extra>}
 * The first violation is latched by wl_fail(); the workload keeps running and
 * keeps reporting so the test can read the reason. */
#ifndef WL_COMMON_H
#define WL_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *wl_name = "?";
static char wl_path[4096];
static char wl_err[1024];
static int wl_failed; /* 0 none, 1 being written, 2 latched */

static inline pid_t wl_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static inline double wl_now(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double wl_mono(void) { return wl_now(CLOCK_MONOTONIC); }

static inline void wl_sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Latch the first violation (thread-safe, not async-signal-safe). */
__attribute__((format(printf, 1, 2))) static void wl_fail(const char *fmt, ...) {
  int expected = 0;
  if (!__atomic_compare_exchange_n(&wl_failed, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(wl_err, sizeof wl_err, fmt, ap);
  va_end(ap);
  __atomic_store_n(&wl_failed, 2, __ATOMIC_RELEASE);
}

static inline int wl_ok(void) { return __atomic_load_n(&wl_failed, __ATOMIC_ACQUIRE) == 0; }

static void wl_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void wl_init(const char *name, int argc, char **argv) {
  wl_name = name;
  if (argc < 2) {
    fprintf(stderr, "usage: %s STATUS_FILE [args...]\n", argv[0]);
    exit(2);
  }
  snprintf(wl_path, sizeof wl_path, "%s", argv[1]);
}

/* Write {"name","pid","progress","ok","error", extra...} to path atomically.
 * extra is a JSON fragment without braces (may be empty), e.g. "\"a\":1".
 * err overrides the latched error (used by child processes that report
 * their own failure). */
static void wl_write_status_to(const char *path, const char *name, unsigned long long progress, int ok,
                               const char *err, const char *extra) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)wl_gettid());
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "{\"name\":");
  wl_json_str(f, name);
  fprintf(f, ",\"pid\":%d,\"progress\":%llu,\"ok\":%s,\"error\":", (int)getpid(), progress, ok ? "true" : "false");
  if (ok) fputs("null", f);
  else wl_json_str(f, err ? err : "unknown error");
  if (extra && *extra) fprintf(f, ",%s", extra);
  fputs("}\n", f);
  if (fclose(f) != 0) {
    unlink(tmp);
    return;
  }
  if (rename(tmp, path) != 0) unlink(tmp);
}

/* Status of this process with the latched error. */
__attribute__((format(printf, 2, 3))) static void wl_status(unsigned long long progress, const char *extra_fmt, ...) {
  static char extra[65536];
  extra[0] = 0;
  if (extra_fmt) {
    va_list ap;
    va_start(ap, extra_fmt);
    vsnprintf(extra, sizeof extra, extra_fmt, ap);
    va_end(ap);
  }
  int ok = wl_ok();
  if (!ok) {
    /* wait until the message is fully written */
    while (__atomic_load_n(&wl_failed, __ATOMIC_ACQUIRE) != 2) {
    }
  }
  wl_write_status_to(wl_path, wl_name, progress, ok, wl_err, extra);
}

/* Small deterministic mixers. */
static inline uint64_t wl_mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static inline uint64_t wl_xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#endif
