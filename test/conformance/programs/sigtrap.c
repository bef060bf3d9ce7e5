/* A SIGTRAP handler survives and runs when the program raises SIGTRAP. */
#include "conformance.h"
#include <signal.h>

static volatile sig_atomic_t hits;
static void on_trap(int s) { (void)s; hits++; }

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct sigaction sa = {0};
  sa.sa_handler = on_trap;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTRAP, &sa, NULL);
  cf_ready();
  cf_wait_restored();
  struct sigaction got;
  sigaction(SIGTRAP, NULL, &got);
  CF_CHECK(got.sa_handler == on_trap, "SIGTRAP: handler expected %p, got %p", (void *)on_trap, (void *)got.sa_handler);
  raise(SIGTRAP);
  CF_CHECK(hits == 1, "SIGTRAP: handler runs expected 1, got %d", (int)hits);
  cf_pass();
}
