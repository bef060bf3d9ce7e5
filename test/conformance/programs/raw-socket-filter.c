/* A raw socket with a classic BPF socket filter attached (as packet capture tools use): the
 * filter would be lost, so ferry must carry it or refuse. */
#include "conformance.h"
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (s < 0) cf_skip("raw socket: %s", strerror(errno));
  struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0)}; /* accept nothing */
  struct sock_fprog prog = {.len = 1, .filter = code};
  if (setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) cf_skip("SO_ATTACH_FILTER: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  socklen_t n = 0;
  CF_CHECK(getsockopt(s, SOL_SOCKET, SO_GET_FILTER, NULL, &n) == 0 && n == 1, "raw socket fd %d: filter expected 1 instruction, got %u", s, (unsigned)n);
  cf_pass();
}
