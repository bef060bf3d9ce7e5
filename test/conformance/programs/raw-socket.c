/* A raw IPv4 socket (SOCK_RAW, IPPROTO_ICMP) keeps its kind and still sends and receives:
 * an echo request to 127.0.0.1 comes back as a reply. */
#include "conformance.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>

static unsigned short checksum(const void *p, size_t n) {
  const unsigned short *w = p;
  unsigned long sum = 0;
  for (; n > 1; n -= 2) sum += *w++;
  if (n) sum += *(const unsigned char *)w;
  sum = (sum >> 16) + (sum & 0xffff);
  return (unsigned short)~(sum + (sum >> 16));
}

/* Sends an echo request with this id and waits for its reply on s: 1 when it came back. */
static int echo(int s, unsigned short id) {
  struct icmphdr h = {.type = ICMP_ECHO, .un.echo = {.id = htons(id), .sequence = htons(1)}};
  h.checksum = checksum(&h, sizeof h);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (sendto(s, &h, sizeof h, 0, (struct sockaddr *)&to, sizeof to) != sizeof h) return 0;
  for (int i = 0; i < 20; i++) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 500) != 1) return 0;
    unsigned char b[256];
    ssize_t n = recv(s, b, sizeof b, 0);
    if (n < (ssize_t)sizeof(struct iphdr)) continue;
    size_t hl = (size_t)(b[0] & 0xf) * 4;
    struct icmphdr *r = (struct icmphdr *)(b + hl);
    if ((size_t)n >= hl + sizeof *r && r->type == ICMP_ECHOREPLY && ntohs(r->un.echo.id) == id) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (s < 0) cf_skip("raw socket: %s", strerror(errno));
  unsigned short id = (unsigned short)getpid();
  if (!echo(s, id)) cf_skip("no ICMP echo reply on 127.0.0.1 before the checkpoint");
  cf_ready();
  cf_wait_restored();
  int v = 0;
  socklen_t l = sizeof v;
  CF_CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && v == SOCK_RAW, "raw socket fd %d: SO_TYPE expected SOCK_RAW, got %d (%s)", s, v, strerror(errno));
  CF_CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &l) == 0 && v == IPPROTO_ICMP, "raw socket fd %d: SO_PROTOCOL expected ICMP, got %d", s, v);
  CF_CHECK(echo(s, (unsigned short)(id + 1)), "raw socket fd %d: no ICMP echo reply after the restore", s);
  cf_pass();
}
