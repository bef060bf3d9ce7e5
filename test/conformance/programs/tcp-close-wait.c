/* A TCP connection whose peer has closed its side while this side has not (CLOSE_WAIT): reads
 * give the queued bytes then end of file, writes still go to the peer. */
#include "conformance.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int state(int s) {
  struct tcp_info ti;
  socklen_t l = sizeof ti;
  return getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 ? ti.tcpi_state : -1;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 || getsockname(l, (struct sockaddr *)&a, &al) != 0) cf_skip("listen: %s", strerror(errno));
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) cf_skip("connect: %s", strerror(errno));
  int s = accept(l, NULL, NULL);
  if (write(c, "bye", 3) != 3) cf_skip("write");
  shutdown(c, SHUT_WR);
  for (int i = 0; i < 1000 && state(s) != TCP_CLOSE_WAIT; i++) usleep(1000);
  if (state(s) != TCP_CLOSE_WAIT) cf_skip("state %d, not CLOSE_WAIT", state(s));
  cf_ready();
  cf_wait_restored();
  char b[8] = {0};
  CF_CHECK(read(s, b, sizeof b) == 3 && memcmp(b, "bye", 3) == 0, "tcp fd %d (close-wait): queued bytes lost", s);
  CF_CHECK(read(s, b, sizeof b) == 0, "tcp fd %d (close-wait): no end of file", s);
  CF_CHECK(write(s, "ok", 2) == 2, "tcp fd %d (close-wait): write: %s", s, strerror(errno));
  CF_CHECK(read(c, b, sizeof b) == 2 && memcmp(b, "ok", 2) == 0, "tcp fd %d: the peer did not get the bytes sent in close-wait", c);
  cf_pass();
}
