/* Messages queued on unix datagram and seqpacket socketpairs keep their boundaries and order
 * (an empty datagram too). */
#include "conformance.h"
#include <sys/socket.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) cf_skip("socketpair: %s", strerror(errno));
  if (send(sv[0], "one", 3, 0) != 3 || send(sv[0], "", 0, 0) != 0 || send(sv[0], "second", 6, 0) != 6) cf_skip("send");
  int sq[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) != 0) cf_skip("socketpair seqpacket: %s", strerror(errno));
  if (send(sq[1], "abc", 3, 0) != 3 || send(sq[1], "de", 2, 0) != 2) cf_skip("send");
  cf_ready();
  cf_wait_restored();
  char b[16] = {0};
  ssize_t n = recv(sv[1], b, sizeof b, MSG_DONTWAIT);
  CF_CHECK(n == 3 && memcmp(b, "one", 3) == 0, "unix dgram fd %d: first datagram expected 'one', got %zd bytes", sv[1], n);
  n = recv(sv[1], b, sizeof b, MSG_DONTWAIT);
  CF_CHECK(n == 0, "unix dgram fd %d: second datagram expected empty, got %zd bytes", sv[1], n);
  n = recv(sv[1], b, sizeof b, MSG_DONTWAIT);
  CF_CHECK(n == 6 && memcmp(b, "second", 6) == 0, "unix dgram fd %d: second datagram expected 'second', got %zd bytes", sv[1], n);
  n = recv(sq[0], b, sizeof b, MSG_DONTWAIT);
  CF_CHECK(n == 3 && memcmp(b, "abc", 3) == 0, "unix seqpacket fd %d: first message expected 'abc', got %zd bytes", sq[0], n);
  n = recv(sq[0], b, sizeof b, MSG_DONTWAIT);
  CF_CHECK(n == 2 && memcmp(b, "de", 2) == 0, "unix seqpacket fd %d: second message expected 'de', got %zd bytes", sq[0], n);
  CF_CHECK(recv(sv[1], b, sizeof b, MSG_DONTWAIT) == -1 && errno == EAGAIN, "unix dgram fd %d: more datagrams than were queued", sv[1]);
  cf_pass();
}
