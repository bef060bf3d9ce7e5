/* A unix stream socket whose peer closed: it reads the bytes left, then end of file. */
#include "conformance.h"
#include <signal.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) cf_skip("socketpair");
  if (write(sv[1], "last", 4) != 4) cf_skip("write");
  close(sv[1]);
  cf_ready();
  cf_wait_restored();
  char b[8] = {0};
  CF_CHECK(read(sv[0], b, sizeof b) == 4 && memcmp(b, "last", 4) == 0, "unix fd %d (peer gone): bytes left lost", sv[0]);
  CF_CHECK(read(sv[0], b, sizeof b) == 0, "unix fd %d (peer gone): no end of file", sv[0]);
  CF_CHECK(write(sv[0], "x", 1) == -1 && errno == EPIPE, "unix fd %d (peer gone): write expected EPIPE", sv[0]);
  cf_pass();
}
