/* A unix listener with a connection not yet accepted: accept returns it, with its bytes. */
#include "conformance.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/l", cf_dir);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0) cf_skip("listen: %s", strerror(errno));
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)&a, sizeof a) != 0 || write(c, "hi", 2) != 2) cf_skip("connect: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
  CF_CHECK(s >= 0, "unix listener fd %d: the waiting connection is gone: %s", l, strerror(errno));
  char b[4] = {0};
  CF_CHECK(read(s, b, 4) == 2 && memcmp(b, "hi", 2) == 0, "accepted unix connection: bytes lost");
  cf_pass();
}
