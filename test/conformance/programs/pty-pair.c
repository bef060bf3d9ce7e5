/* A pseudo-terminal whose both ends the process holds: bytes written to one end come out of the other. */
#include "conformance.h"
#include <termios.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) cf_skip("posix_openpt: %s", strerror(errno));
  int s = open(ptsname(m), O_RDWR | O_NOCTTY);
  if (s < 0) cf_skip("open pts: %s", strerror(errno));
  struct termios t;
  tcgetattr(s, &t);
  cfmakeraw(&t);
  tcsetattr(s, TCSANOW, &t);
  cf_ready();
  cf_wait_restored();
  CF_CHECK(write(m, "ping", 4) == 4, "pty master fd %d: write: %s", m, strerror(errno));
  char b[8] = {0};
  CF_CHECK(read(s, b, sizeof b) == 4 && memcmp(b, "ping", 4) == 0, "pty slave fd %d: expected 'ping'", s);
  cf_pass();
}
