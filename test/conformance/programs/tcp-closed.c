/* A TCP socket whose connection has ended (both sides closed it, the peer's end is gone): its
 * owner still holds the descriptor. After the restore it reads end of file or an error and
 * cannot send, as before. */
#include "conformance.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

static int state(int s) {
  struct tcp_info ti;
  socklen_t l = sizeof ti;
  return getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 ? ti.tcpi_state : -1;
}

int main(int argc, char **argv) {
  cf_init(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 || getsockname(l, (struct sockaddr *)&a, &al) != 0) cf_skip("listen: %s", strerror(errno));
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) cf_skip("connect: %s", strerror(errno));
  int s = accept(l, NULL, NULL);
  close(l);
  /* The client closes first and ends in TIME_WAIT (no descriptor); the server's socket ends CLOSED. */
  shutdown(c, SHUT_WR);
  char b[8];
  if (read(s, b, sizeof b) != 0) cf_skip("no EOF");
  shutdown(s, SHUT_WR);
  if (read(c, b, sizeof b) != 0) cf_skip("no EOF on the client");
  close(c);
  for (int i = 0; i < 1000 && state(s) != TCP_CLOSE; i++) usleep(1000);
  if (state(s) != TCP_CLOSE) cf_skip("server socket in state %d, not CLOSE", state(s));
  cf_ready();
  cf_wait_restored();
  CF_CHECK(state(s) == TCP_CLOSE, "tcp fd %d: state expected CLOSE (%d), got %d", s, TCP_CLOSE, state(s));
  errno = 0;
  ssize_t n = read(s, b, sizeof b);
  CF_CHECK(n == 0, "tcp fd %d (connection ended): read expected 0 (end of file), got %zd (%s)", s, n, strerror(errno));
  errno = 0;
  n = send(s, "x", 1, MSG_NOSIGNAL);
  CF_CHECK(n == -1 && errno == EPIPE, "tcp fd %d (connection ended): send expected EPIPE, got %zd (%s)", s, n, strerror(errno));
  cf_pass();
}
