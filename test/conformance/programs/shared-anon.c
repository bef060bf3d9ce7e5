/* MAP_SHARED|MAP_ANONYMOUS memory between a parent and its child: still one object, still named /dev/zero (deleted). */
#include "conformance.h"
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

static int path_of(void *addr, char *out, size_t n) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long lo, hi;
  int found = 0;
  while (f && fgets(line, sizeof line, f)) {
    int off = 0;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) >= 2 && lo == (unsigned long)addr) {
      snprintf(out, n, "%s", line + off);
      out[strcspn(out, "\n")] = 0;
      found = 1;
      break;
    }
  }
  if (f) fclose(f);
  return found;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  volatile uint32_t *m = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) cf_skip("mmap: %s", strerror(errno));
  for (int i = 16; i < 4096; i++) m[i] = (uint32_t)i * 2654435761u;
  char before[256];
  if (!path_of((void *)m, before, sizeof before)) cf_skip("mapping not in maps");
  pid_t child = fork();
  if (child == 0) {
    while (m[0] != 1) usleep(1000);
    m[1] = 2;
    for (;;) pause();
  }
  cf_ready();
  cf_wait_restored();
  char after[256];
  CF_CHECK(path_of((void *)m, after, sizeof after), "shared mapping %p: expected in maps, got none", (void *)m);
  CF_CHECK(strcmp(before, after) == 0, "shared mapping %p: name expected %s, got %s", (void *)m, before, after);
  for (int i = 16; i < 4096; i++) CF_CHECK(m[i] == (uint32_t)i * 2654435761u, "shared mapping: word %d expected %u, got %u", i, (uint32_t)i * 2654435761u, m[i]);
  m[0] = 1;
  for (int i = 0; i < 5000 && m[1] != 2; i++) usleep(1000);
  uint32_t seen = m[1];
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  CF_CHECK(seen == 2, "shared mapping: child's write expected visible to the parent (2), got %u", seen);
  cf_pass();
}
