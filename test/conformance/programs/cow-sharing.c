/* Pages a parent, its child and its grandchild share copy-on-write stay shared as they were: smaps
 * Shared_Clean + Shared_Dirty of the area is unchanged in each (whether a shared page counts as
 * dirty is the kernel's bookkeeping, not the program's state), and each sees its own bytes.
 * After the forks the parent rewrites page 0 (child and grandchild still share the old one) and
 * the grandchild rewrites page 1; the last page is all zeros; and the grandchild rewrites page 2
 * a moment after the program is ready (during a migration's pre-copy, most likely), which the
 * checks wait for. */
#include "conformance.h"
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 256
#define PG 4096

static uint8_t *m;

static long shared_kb(pid_t pid) {
  char v[128], p[32];
  if (pid) snprintf(p, sizeof p, "%d", (int)pid);
  else snprintf(p, sizeof p, "self");
  long a = cf_smaps_value_of(p, m, "Shared_Dirty", v, sizeof v) ? strtol(v, NULL, 10) : -1;
  long b = cf_smaps_value_of(p, m, "Shared_Clean", v, sizeof v) ? strtol(v, NULL, 10) : -1;
  return a < 0 || b < 0 ? -1 : a + b;
}

/* What page `page` of the area should hold in a process: its own rewrite, or the first fill. */
static uint8_t want(int page, uint8_t own, int own_page, int own2_page) {
  if (page == own_page || page == own2_page) return own;
  return (uint8_t)(page + 1);
}

/* Reads another process's copy of the area through /proc/PID/mem (which takes no pin, so reading
 * does not un-share what it reads). */
static int read_area(pid_t pid, uint8_t *buf) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = pread(fd, buf, PAGES * PG, (off_t)(uintptr_t)m);
  close(fd);
  return n == PAGES * PG ? 0 : -1;
}

static void check_area(const char *who, const uint8_t *a, uint8_t own, int own_page, int own2_page) {
  for (int i = 0; i < PAGES * PG; i++) {
    uint8_t w = want(i / PG, own, own_page, own2_page);
    CF_CHECK(a[i] == w, "%s's area: byte %d expected %u, got %u", who, i, w, a[i]);
  }
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  /* PROT_NONE pages on both sides keep the area a mapping of its own (nothing else merges into it). */
  uint8_t *r = mmap(NULL, (PAGES + 2) * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  m = r + PG;
  if (mprotect(m, PAGES * PG, PROT_READ | PROT_WRITE) != 0) cf_skip("mprotect: %s", strerror(errno));
  for (int i = 0; i < PAGES * PG; i++) m[i] = (uint8_t)(i / PG + 1); /* page 255: all zeros */
  int down[2], up[2]; /* parent -> grandchild, grandchild -> parent */
  if (pipe(down) != 0 || pipe(up) != 0) cf_skip("pipe: %s", strerror(errno));
  pid_t child = fork();
  if (child == 0) {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      char c;
      if (read(down[0], &c, 1) != 1) _exit(1); /* the parent's page 0 rewrite is done */
      memset(m + PG, 0xF1, PG);
      if (write(up[1], "g", 1) != 1) _exit(1);
      if (read(down[0], &c, 1) != 1) _exit(1); /* the program is ready */
      usleep(300 * 1000);
      memset(m + 2 * PG, 0xF2, PG);
      for (;;) pause();
    }
    for (;;) pause();
  }
  /* The child forks the grandchild before the parent rewrites page 0: wait until the grandchild exists. */
  char path[64];
  pid_t grandchild = 0;
  for (int t = 0; t < 5000 && !grandchild; t++) {
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)child, (int)child);
    FILE *f = fopen(path, "r");
    int g = 0;
    if (f && fscanf(f, "%d", &g) == 1) grandchild = g;
    if (f) fclose(f);
    if (!grandchild) usleep(1000);
  }
  if (!grandchild) cf_skip("the grandchild never showed in %s", path);
  memset(m, 0xF0, PG);
  char c;
  if (write(down[1], "p", 1) != 1 || read(up[0], &c, 1) != 1) cf_skip("sync pipe: %s", strerror(errno));
  long mine = shared_kb(0), childs = shared_kb(child), grands = shared_kb(grandchild);
  /* parent: page 0 its own; child: all shared; grandchild: page 1 its own. */
  if (mine != (PAGES - 1) * 4 || childs != PAGES * 4 || grands != (PAGES - 1) * 4)
    cf_skip("smaps shows %ld/%ld/%ld kB shared, expected %d/%d/%d", mine, childs, grands, (PAGES - 1) * 4, PAGES * 4, (PAGES - 1) * 4);
  if (write(down[1], "r", 1) != 1) cf_skip("sync pipe: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  static uint8_t buf[PAGES * PG];
  /* The grandchild's page 2 rewrite may still be to come. */
  for (int t = 0; t < 5000; t++) {
    if (read_area(grandchild, buf) == 0 && buf[2 * PG] == 0xF2) break;
    usleep(1000);
  }
  long mine2 = shared_kb(0), childs2 = shared_kb(child), grands2 = shared_kb(grandchild);
  int child_read = read_area(child, buf);
  static uint8_t gbuf[PAGES * PG];
  int grand_read = read_area(grandchild, gbuf);
  kill(child, SIGKILL);
  kill(grandchild, SIGKILL);
  waitpid(child, NULL, 0);
  check_area("parent", m, 0xF0, 0, -1);
  CF_CHECK(child_read == 0, "child's area: unreadable through /proc/%d/mem", (int)child);
  check_area("child", buf, 0, -1, -1);
  CF_CHECK(grand_read == 0, "grandchild's area: unreadable through /proc/%d/mem", (int)grandchild);
  for (int i = 0; i < PAGES * PG; i++) {
    int page = i / PG;
    uint8_t w = page == 1 ? 0xF1 : page == 2 ? 0xF2 : (uint8_t)(page + 1);
    CF_CHECK(gbuf[i] == w, "grandchild's area: byte %d expected %u, got %u", i, w, gbuf[i]);
  }
  CF_CHECK(mine2 == mine, "parent's area %p: Shared_Clean+Shared_Dirty expected %ld kB, got %ld kB", (void *)m, mine, mine2);
  CF_CHECK(childs2 == childs, "child's area %p: Shared_Clean+Shared_Dirty expected %ld kB, got %ld kB", (void *)m, childs, childs2);
  CF_CHECK(grands2 == grands - 4, "grandchild's area %p: Shared_Clean+Shared_Dirty expected %ld kB, got %ld kB", (void *)m, grands - 4, grands2);
  cf_pass();
}
