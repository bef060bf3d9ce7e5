/* Pipes whose other end is closed everywhere: a read end without writers reads its remaining
 * bytes then end of file; a write end without readers gets EPIPE. */
#include "conformance.h"
#include <signal.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  int r[2], w[2];
  if (pipe(r) != 0 || pipe(w) != 0) cf_skip("pipe");
  if (write(r[1], "left", 4) != 4) cf_skip("write");
  close(r[1]);
  close(w[0]);
  cf_ready();
  cf_wait_restored();
  char b[8] = {0};
  ssize_t n = read(r[0], b, sizeof b);
  CF_CHECK(n == 4 && memcmp(b, "left", 4) == 0, "pipe fd %d (no writer): expected the 4 bytes 'left', got %zd", r[0], n);
  n = read(r[0], b, sizeof b);
  CF_CHECK(n == 0, "pipe fd %d (no writer): expected end of file, got %zd (%s)", r[0], n, strerror(errno));
  errno = 0;
  n = write(w[1], "x", 1);
  CF_CHECK(n == -1 && errno == EPIPE, "pipe fd %d (no reader): write expected EPIPE, got %zd (%s)", w[1], n, strerror(errno));
  cf_pass();
}
