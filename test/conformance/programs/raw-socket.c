/* A raw IPv4 socket (SOCK_RAW, IPPROTO_ICMP) bound to 127.0.0.1 keeps its kind, binding and
 * ICMP type filter and still sends and receives: an echo request to 127.0.0.1 comes back as a
 * reply. A raw IPv6 socket (ICMPv6) keeps its ICMPv6 type filter, one with IP_HDRINCL keeps it. */
#include "conformance.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/icmp6.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>

#define ICMP_FILTER 1 /* <linux/icmp.h>, which clashes with <netinet/ip_icmp.h> */

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
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s, (struct sockaddr *)&lo, sizeof lo) != 0) cf_skip("bind 127.0.0.1: %s", strerror(errno));
  unsigned filt = 1u << ICMP_TIMESTAMP | 1u << ICMP_INFO_REQUEST; /* struct icmp_filter: a mask of types */
  if (setsockopt(s, SOL_RAW, ICMP_FILTER, &filt, sizeof filt) != 0) cf_skip("ICMP_FILTER: %s", strerror(errno));
  int hdr = socket(AF_INET, SOCK_RAW, IPPROTO_UDP), one = 1;
  if (hdr < 0 || setsockopt(hdr, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) != 0) cf_skip("IP_HDRINCL: %s", strerror(errno));
  int s6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  struct icmp6_filter f6;
  ICMP6_FILTER_SETBLOCKALL(&f6);
  ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f6);
  if (s6 < 0 || setsockopt(s6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof f6) != 0) cf_skip("ICMP6_FILTER: %s", strerror(errno));
  unsigned short id = (unsigned short)getpid();
  if (!echo(s, id)) cf_skip("no ICMP echo reply on 127.0.0.1 before the checkpoint");
  cf_ready();
  cf_wait_restored();
  int v = 0;
  socklen_t l = sizeof v;
  CF_CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && v == SOCK_RAW, "raw socket fd %d: SO_TYPE expected SOCK_RAW, got %d (%s)", s, v, strerror(errno));
  CF_CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &l) == 0 && v == IPPROTO_ICMP, "raw socket fd %d: SO_PROTOCOL expected ICMP, got %d", s, v);
  struct sockaddr_in got = {0};
  l = sizeof got;
  CF_CHECK(getsockname(s, (struct sockaddr *)&got, &l) == 0 && got.sin_addr.s_addr == lo.sin_addr.s_addr, "raw socket fd %d: bound address expected 127.0.0.1, got %s", s, inet_ntoa(got.sin_addr));
  unsigned gf = 0;
  l = sizeof gf;
  CF_CHECK(getsockopt(s, SOL_RAW, ICMP_FILTER, &gf, &l) == 0 && gf == filt, "raw socket fd %d: ICMP_FILTER expected %#x, got %#x", s, filt, gf);
  v = 0;
  l = sizeof v;
  CF_CHECK(getsockopt(hdr, IPPROTO_IP, IP_HDRINCL, &v, &l) == 0 && v == 1, "raw socket fd %d: IP_HDRINCL expected 1, got %d", hdr, v);
  struct icmp6_filter g6;
  l = sizeof g6;
  CF_CHECK(getsockopt(s6, IPPROTO_ICMPV6, ICMP6_FILTER, &g6, &l) == 0 && memcmp(&g6, &f6, sizeof f6) == 0, "raw IPv6 socket fd %d: ICMP6_FILTER changed", s6);
  CF_CHECK(echo(s, (unsigned short)(id + 1)), "raw socket fd %d: no ICMP echo reply after the restore", s);
  cf_pass();
}
