/* A packet socket (AF_PACKET, SOCK_RAW, ETH_P_ALL) bound to the loopback interface keeps its
 * binding and still sees frames sent on lo. */
#include "conformance.h"
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

/* Sends a UDP datagram to 127.0.0.1:9 with this payload and waits until s sees a frame holding it. */
static int sees(int s, const char *tag) {
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  sendto(u, tag, strlen(tag), 0, (struct sockaddr *)&to, sizeof to);
  close(u);
  for (int i = 0; i < 50; i++) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 500) != 1) return 0;
    unsigned char b[2048];
    ssize_t n = recv(s, b, sizeof b, 0);
    if (n > 0 && memmem(b, (size_t)n, tag, strlen(tag))) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (s < 0) cf_skip("packet socket: %s", strerror(errno));
  struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)if_nametoindex("lo")};
  if (a.sll_ifindex == 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) cf_skip("bind to lo: %s", strerror(errno));
  char tag[64];
  snprintf(tag, sizeof tag, "ferry-cf-packet-%d-a", (int)getpid());
  if (!sees(s, tag)) cf_skip("the packet socket sees nothing on lo before the checkpoint");
  cf_ready();
  cf_wait_restored();
  int v = 0;
  socklen_t l = sizeof v;
  CF_CHECK(getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &l) == 0 && v == AF_PACKET, "packet socket fd %d: SO_DOMAIN expected AF_PACKET, got %d", s, v);
  struct sockaddr_ll got = {0};
  l = sizeof got;
  CF_CHECK(getsockname(s, (struct sockaddr *)&got, &l) == 0 && got.sll_ifindex == a.sll_ifindex, "packet socket fd %d: bound ifindex expected %d, got %d", s, a.sll_ifindex, got.sll_ifindex);
  tag[strlen(tag) - 1] = 'b';
  CF_CHECK(sees(s, tag), "packet socket fd %d: sees no frame on lo after the restore", s);
  cf_pass();
}
