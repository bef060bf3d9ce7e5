/* A restored process ignores exactly what it ignored: SigIgn and SigCgt in /proc/self/status are unchanged (SIGINT and SIGQUIT stay default). */
#include "conformance.h"
#include <signal.h>

static void status_line(const char *key, char *out, size_t n) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  out[0] = 0;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, strlen(key)) == 0) {
      snprintf(out, n, "%s", line + strlen(key));
      out[strcspn(out, "\n")] = 0;
    }
  if (f) fclose(f);
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  signal(SIGINT, SIG_DFL);
  signal(SIGQUIT, SIG_DFL);
  char ign[64], cgt[64];
  status_line("SigIgn:", ign, sizeof ign);
  status_line("SigCgt:", cgt, sizeof cgt);
  cf_ready();
  cf_wait_restored();
  char ign2[64], cgt2[64];
  status_line("SigIgn:", ign2, sizeof ign2);
  status_line("SigCgt:", cgt2, sizeof cgt2);
  CF_CHECK(strcmp(ign, ign2) == 0, "status: SigIgn expected %s, got %s", ign, ign2);
  CF_CHECK(strcmp(cgt, cgt2) == 0, "status: SigCgt expected %s, got %s", cgt, cgt2);
  cf_pass();
}
