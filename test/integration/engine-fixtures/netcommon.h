/* Shared by netserver.c and netclient.c: the byte streams both sides generate and check, the
 * latched first error, and a status file rewritten atomically (tmp + rename) as one JSON line. */
#ifndef NETCOMMON_H
#define NETCOMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Byte i of the stream in direction dir (1 client->server, 2 server->client, 3/4 unix pair ends). */
static inline uint8_t gen(uint64_t i, int dir) {
  return (uint8_t)((((uint32_t)i * 2654435761u) >> 24) ^ (uint8_t)(dir * 0x5a) ^ (uint8_t)(i >> 20));
}

static char err_text[512];
static int failed;
__attribute__((format(printf, 1, 2))) static void failf(const char *fmt, ...) {
  if (failed) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err_text, sizeof err_text, fmt, ap);
  va_end(ap);
  failed = 1;
}

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Checks n received bytes at stream offset off; returns 0 when they are all right. */
static int check_bytes(const uint8_t *b, size_t n, uint64_t off, int dir, const char *what) {
  for (size_t k = 0; k < n; k++)
    if (b[k] != gen(off + k, dir)) {
      failf("%s: byte %llu is %u, want %u", what, (unsigned long long)(off + k), b[k], gen(off + k, dir));
      return -1;
    }
  return 0;
}

/* The status file: {"ok":..,"error":..,<body>} */
static void write_status(const char *path, const char *body) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "{\"ok\":%s,\"error\":\"", failed ? "false" : "true");
  for (const char *p = err_text; *p; p++) fputc(*p == '"' ? '\'' : *p, f);
  fprintf(f, "\",%s}\n", body);
  fclose(f);
  rename(tmp, path);
}
#endif
