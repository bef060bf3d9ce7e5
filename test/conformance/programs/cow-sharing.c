/* Pages a parent, its child and its grandchild share copy-on-write stay shared as they were: smaps
 * Shared_Clean + Shared_Dirty of the area is unchanged in each (whether a shared page counts as
 * dirty is the kernel's bookkeeping, not the program's state), and each sees its own bytes.
 * After the forks the parent rewrites page 0 (child and grandchild still share the old one) and
 * the grandchild rewrites page 1; the last page is all zeros; and the grandchild rewrites page 2
 * a moment after the program is ready (during a migration's pre-copy, most likely). Each process
 * reads its own smaps and memory (pids and /proc may belong to another namespace) and answers
 * the parent over a pipe. */
#include "conformance.h"
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 256
#define PG 4096

static uint8_t *m;

struct reply {
  int who; /* 'A' child, 'G' grandchild */
  int kb;  /* Shared_Clean + Shared_Dirty of the area */
  int bad; /* first byte that differs from what the process should hold, or -1 */
  int got;
};

static long shared_kb(void) {
  char v[128];
  long a = cf_smaps_value(m, "Shared_Dirty", v, sizeof v) ? strtol(v, NULL, 10) : -1;
  long b = cf_smaps_value(m, "Shared_Clean", v, sizeof v) ? strtol(v, NULL, 10) : -1;
  return a < 0 || b < 0 ? -1 : a + b;
}

/* What page `page` holds in a process: its own rewrites (value 0xF0 + page), else the first fill. */
static uint8_t want(int page, unsigned own_pages) {
  return page < 8 && (own_pages >> page & 1) ? (uint8_t)(0xF0 + page) : (uint8_t)(page + 1);
}

static int first_bad(unsigned own_pages) {
  for (int i = 0; i < PAGES * PG; i++)
    if (m[i] != want(i / PG, own_pages)) return i;
  return -1;
}

static void answer(int fd, int who, unsigned own_pages) {
  struct reply r = {who, (int)shared_kb(), -1, 0};
  r.bad = first_bad(own_pages);
  if (r.bad >= 0) r.got = m[r.bad];
  if (write(fd, &r, sizeof r) != sizeof r) _exit(1);
}

/* Serves the parent's questions: 'm' measure, 'c' check (measure and compare bytes). */
static void serve(int in, int out, int who, unsigned own_pages) {
  char c;
  while (read(in, &c, 1) == 1) answer(out, who, own_pages);
  _exit(0);
}

static void ask(int to, int back, char q, struct reply *r) {
  if (write(to, &q, 1) != 1 || read(back, r, sizeof *r) != sizeof *r) cf_fail("no answer to '%c' from a child: %s", q, strerror(errno));
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  /* PROT_NONE pages on both sides keep the area a mapping of its own (nothing else merges into it). */
  uint8_t *r = mmap(NULL, (PAGES + 2) * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  m = r + PG;
  if (mprotect(m, PAGES * PG, PROT_READ | PROT_WRITE) != 0) cf_skip("mprotect: %s", strerror(errno));
  for (int i = 0; i < PAGES * PG; i++) m[i] = (uint8_t)(i / PG + 1); /* page 255: all zeros */
  int toA[2], toG[2], fromA[2], fromG[2];
  if (pipe(toA) || pipe(toG) || pipe(fromA) || pipe(fromG)) cf_skip("pipe: %s", strerror(errno));
  pid_t child = fork();
  if (child == 0) {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      char c;
      if (read(toG[0], &c, 1) != 1) _exit(1); /* the parent rewrote page 0 */
      memset(m + PG, 0xF1, PG);
      answer(fromG[1], 'G', 1u << 1);
      if (read(toG[0], &c, 1) != 1) _exit(1); /* measure */
      answer(fromG[1], 'G', 1u << 1);
      if (read(toG[0], &c, 1) != 1) _exit(1); /* the program is ready */
      usleep(300 * 1000);
      memset(m + 2 * PG, 0xF2, PG);
      serve(toG[0], fromG[1], 'G', 1u << 1 | 1u << 2);
    }
    if (grandchild < 0 || write(fromA[1], &grandchild, sizeof grandchild) != sizeof grandchild) _exit(1);
    serve(toA[0], fromA[1], 'A', 0);
  }
  pid_t grandchild;
  if (read(fromA[0], &grandchild, sizeof grandchild) != sizeof grandchild) cf_skip("the child never forked the grandchild");
  memset(m, 0xF0, PG);
  struct reply a, g;
  ask(toG[1], fromG[0], 'p', &g);
  ask(toA[1], fromA[0], 'm', &a);
  ask(toG[1], fromG[0], 'm', &g);
  long mine = shared_kb();
  /* parent: page 0 its own; child: all shared; grandchild: page 1 its own. */
  if (mine != (PAGES - 1) * 4 || a.kb != PAGES * 4 || g.kb != (PAGES - 1) * 4)
    cf_skip("smaps shows %ld/%d/%d kB shared, expected %d/%d/%d", mine, a.kb, g.kb, (PAGES - 1) * 4, PAGES * 4, (PAGES - 1) * 4);
  if (write(toG[1], "r", 1) != 1) cf_skip("pipe: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  struct reply a2, g2;
  ask(toA[1], fromA[0], 'c', &a2);
  ask(toG[1], fromG[0], 'c', &g2); /* answered once its page 2 rewrite is done */
  long mine2 = shared_kb();
  int bad = first_bad(1u << 0);
  kill(grandchild, SIGKILL);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  CF_CHECK(bad < 0, "parent's area: byte %d expected %u, got %u", bad, want(bad / PG, 1), m[bad < 0 ? 0 : bad]);
  CF_CHECK(a2.bad < 0, "child's area: byte %d expected %u, got %u", a2.bad, want(a2.bad / PG, 0), a2.got);
  CF_CHECK(g2.bad < 0, "grandchild's area: byte %d expected %u, got %u", g2.bad, want(g2.bad / PG, 6), g2.got);
  CF_CHECK(mine2 == mine, "parent's area %p: Shared_Clean+Shared_Dirty expected %ld kB, got %ld kB", (void *)m, mine, mine2);
  CF_CHECK(a2.kb == a.kb, "child's area %p: Shared_Clean+Shared_Dirty expected %d kB, got %d kB", (void *)m, a.kb, a2.kb);
  CF_CHECK(g2.kb == g.kb - 4, "grandchild's area %p: Shared_Clean+Shared_Dirty expected %d kB (page 2 rewritten), got %d kB", (void *)m, g.kb - 4, g2.kb);
  cf_pass();
}
