/* A UDP socket shut down for writing stays so (send gets EPIPE); one shut down for reading
 * keeps polling as read-hung-up (POLLRDHUP). */
#include "conformance.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int rx = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (rx < 0 || bind(rx, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(rx, (struct sockaddr *)&a, &al) != 0) cf_skip("udp bind: %s", strerror(errno));
  int tx = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(tx, (struct sockaddr *)&a, sizeof a) != 0) cf_skip("udp connect: %s", strerror(errno));
  if (send(tx, "before", 6, 0) != 6) cf_skip("udp send: %s", strerror(errno));
  char b[16];
  if (recv(rx, b, sizeof b, 0) != 6) cf_skip("udp recv");
  if (shutdown(tx, SHUT_WR) != 0) cf_skip("shutdown SHUT_WR: %s", strerror(errno));
  if (send(tx, "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) cf_skip("a shut-down udp socket can send here");
  int rd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in c = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(rd, (struct sockaddr *)&c, sizeof c) != 0 || connect(rd, (struct sockaddr *)&a, sizeof a) != 0) cf_skip("udp bind: %s", strerror(errno));
  if (shutdown(rd, SHUT_RD) != 0) cf_skip("shutdown SHUT_RD: %s", strerror(errno));
  struct pollfd pf = {.fd = rd, .events = POLLIN | POLLRDHUP};
  if (poll(&pf, 1, 0) != 1 || !(pf.revents & POLLRDHUP)) cf_skip("SHUT_RD does not show as POLLRDHUP here");
  cf_ready();
  cf_wait_restored();
  errno = 0;
  ssize_t n = send(tx, "after", 5, MSG_NOSIGNAL);
  CF_CHECK(n == -1 && errno == EPIPE, "udp fd %d shut down for writing: send expected EPIPE, got %zd (%s)", tx, n, strerror(errno));
  pf.revents = 0;
  int pr = poll(&pf, 1, 0);
  CF_CHECK(pr == 1 && (pf.revents & POLLRDHUP), "udp fd %d shut down for reading: poll expected POLLRDHUP, got %d revents 0x%x", rd, pr, pf.revents);
  cf_pass();
}
