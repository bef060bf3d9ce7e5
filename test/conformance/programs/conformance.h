/* The contract of a conformance program (see ../README.md).
 *
 * argv[1] is a directory of its own. The program
 *   1. sets up the kernel state it is about (children, mappings, fds, signals...);
 *      if the machine cannot give that state, cf_skip("why") and exit;
 *   2. cf_ready(): writes DIR/ready; from then on the runner may checkpoint the tree;
 *   3. cf_wait_restored(): waits until the runner creates DIR/go, which it does only after
 *      the tree was restored (or migrated) and resumed;
 *   4. checks its own state byte for byte, flag for flag, and ends with cf_pass() or
 *      cf_fail("resource: field expected X, got Y").
 * Results are written whole to DIR/result (temp file, then rename): "ok", "skip: ...",
 * "wrong: ...". Children never write a result unless the program says so; they report to
 * the root through the state under test or a pipe of the program's own. */
#ifndef FERRY_CONFORMANCE_H
#define FERRY_CONFORMANCE_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char cf_dir[3072];

static void cf_write(const char *name, const char *text) {
  char tmp[4096], dst[4096];
  snprintf(tmp, sizeof tmp, "%s/.%s.%d", cf_dir, name, (int)getpid());
  snprintf(dst, sizeof dst, "%s/%s", cf_dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) _exit(3);
  size_t n = strlen(text);
  if (write(fd, text, n) != (ssize_t)n) _exit(3);
  close(fd);
  if (rename(tmp, dst) != 0) _exit(3);
}

static void cf_init(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    exit(2);
  }
  snprintf(cf_dir, sizeof cf_dir, "%s", argv[1]);
}

static void cf_ready(void) { cf_write("ready", "ready\n"); }

/* Polls for DIR/go every 2 ms; a signal that interrupts the sleep does not end the wait. */
static void cf_wait_restored(void) {
  char go[4096];
  snprintf(go, sizeof go, "%s/go", cf_dir);
  struct stat st;
  while (stat(go, &st) != 0) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}

__attribute__((noreturn)) static void cf_pass(void) {
  cf_write("result", "ok\n");
  exit(0);
}

__attribute__((format(printf, 2, 3), noreturn)) static void cf_end(const char *kind, const char *fmt, ...) {
  char msg[2048], line[2200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "%s: %s\n", kind, msg);
  cf_write("result", line);
  exit(kind[0] == 's' ? 0 : 1);
}

/* The value of `key` ("VmFlags", "Shared_Dirty"...) in /proc/PID/smaps ("self" or a pid) for the
 * mapping that holds addr; 0 and an empty out when there is no such mapping. */
static int cf_smaps_value_of(const char *pid, const void *addr, const char *key, char *out, size_t n) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%s/smaps", pid);
  FILE *f = fopen(path, "r");
  char line[512];
  unsigned long lo, hi, a = (unsigned long)addr;
  int in = 0, found = 0;
  size_t k = strlen(key);
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    char *dash = strchr(line, '-'), *sp = strchr(line, ' ');
    if (dash && sp && dash < sp && sscanf(line, "%lx-%lx ", &lo, &hi) == 2) in = lo <= a && a < hi;
    else if (in && strncmp(line, key, k) == 0 && line[k] == ':') {
      snprintf(out, n, "%s", line + k + 1);
      out[strcspn(out, "\n")] = 0;
      found = 1;
      break;
    }
  }
  if (f) fclose(f);
  return found;
}

static int cf_smaps_value(const void *addr, const char *key, char *out, size_t n) { return cf_smaps_value_of("self", addr, key, out, n); }

/* Whether the mapping holding addr shows VmFlags flag (1), not (0), or there is no mapping (-1). */
static int cf_vmflag(const void *addr, const char *flag) {
  char v[512], want[8];
  if (!cf_smaps_value(addr, "VmFlags", v, sizeof v)) return -1;
  snprintf(want, sizeof want, " %s", flag);
  return strstr(v, want) != NULL;
}

#define cf_fail(...) cf_end("wrong", __VA_ARGS__)
#define cf_skip(...) cf_end("skip", __VA_ARGS__)
/* A check that ends the program with "wrong" naming the expression and errno. */
#define CF_CHECK(cond, ...) do { if (!(cond)) cf_fail(__VA_ARGS__); } while (0)

/* What another POSIX lock owner (a forked child) is told by F_GETLK about a lock of `type` over
 * [start, start+len) of fd: the conflicting lock (type, range, owner pid), or F_UNLCK. */
__attribute__((unused)) static struct flock cf_posix_probe(int fd, short type, off_t start, off_t len) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  int p[2];
  if (pipe(p) != 0) cf_fail("pipe: %s", strerror(errno));
  pid_t c = fork();
  if (c == 0) {
    if (fcntl(fd, F_GETLK, &fl) != 0) fl.l_type = -1;
    if (write(p[1], &fl, sizeof fl) != sizeof fl) _exit(1);
    _exit(0);
  }
  close(p[1]);
  if (read(p[0], &fl, sizeof fl) != sizeof fl) cf_fail("probe child: no answer");
  close(p[0]);
  waitpid(c, NULL, 0);
  return fl;
}

#endif
