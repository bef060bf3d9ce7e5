// A network server that checks everything it receives, for the engine's socket tests. In one
// poll loop: TCP port 7000 (the first byte picks the mode of a connection: 'S' a full-duplex
// stream both sides generate and check, read slowly so queues fill in both directions; 'P'
// echo; 'H' one "hello N" line, then close), UDP port 7001 (echo), a unix listener at argv[2]
// ("hello-unix" to whoever connects), and a connected unix pair of its own with unread bytes
// queued in both directions, checked once the file argv[3] appears.
//   netserver STATUS UNIXPATH DRAINFILE
#include "netcommon.h"
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXC 32
#define SLOW_READ 4096 /* bytes per 50 ms: the client's bytes pile up in the receive queue */
struct conn {
  int fd;
  char mode;
  uint64_t rx, tx;
};
static struct conn conns[MAXC];
static int nconns;

static int listen_tcp(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7000)};
  if (bind(fd, (void *)&a, sizeof a) || listen(fd, 16)) exit(2);
  return fd;
}

static int bind_udp(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7001)};
  if (bind(fd, (void *)&a, sizeof a)) exit(2);
  return fd;
}

static void drop(int i) {
  close(conns[i].fd);
  conns[i] = conns[--nconns];
}

/* One connection's turn; returns 0 when it was closed. */
static int serve(int i, short rev, int tick) {
  struct conn *c = &conns[i];
  uint8_t buf[65536];
  if (c->mode == 0 && (rev & POLLIN)) {
    ssize_t n = read(c->fd, &c->mode, 1);
    if (n <= 0) return drop(i), 0;
  }
  if (c->mode == 'H') {
    char line[64];
    int n = snprintf(line, sizeof line, "hello %d\n", nconns);
    if (write(c->fd, line, (size_t)n) != n) failf("hello write");
    return drop(i), 0;
  }
  if (c->mode == 'P' && (rev & POLLIN)) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && errno != EAGAIN) failf("ping read: %s", strerror(errno));
    if (n <= 0) return n == 0 ? (drop(i), 0) : 1;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(c->fd, buf + off, (size_t)(n - off));
      if (w < 0 && errno != EAGAIN) return failf("ping write: %s", strerror(errno)), drop(i), 0;
      if (w > 0) off += w;
    }
  }
  if (c->mode == 'S') {
    if (rev & POLLOUT) {
      for (size_t k = 0; k < sizeof buf; k++) buf[k] = gen(c->tx + k, 2);
      ssize_t w = write(c->fd, buf, sizeof buf);
      if (w > 0) c->tx += (uint64_t)w;
      else if (w < 0 && errno != EAGAIN) failf("stream write: %s", strerror(errno));
    }
    if (tick) {
      ssize_t n = read(c->fd, buf, SLOW_READ);
      if (n == 0) return drop(i), 0;
      if (n < 0 && errno != EAGAIN) failf("stream read: %s", strerror(errno));
      if (n > 0) check_bytes(buf, (size_t)n, c->rx, 1, "server stream"), c->rx += (uint64_t)n;
    }
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  signal(SIGPIPE, SIG_IGN);
  int lfd = listen_tcp(), ufd = bind_udp();
  struct sockaddr_un ua = {.sun_family = AF_UNIX};
  snprintf(ua.sun_path, sizeof ua.sun_path, "%s", argv[2]);
  unlink(argv[2]);
  int xl = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (bind(xl, (void *)&ua, sizeof ua) || listen(xl, 4)) return 2;
  // The pair: our own client end and the end the listener accepted, each with unread bytes.
  int uc = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(uc, (void *)&ua, sizeof ua)) return 2;
  int us = accept4(xl, 0, 0, 0);
  uint8_t q[1000];
  for (int k = 0; k < 1000; k++) q[k] = gen((uint64_t)k, 3);
  if (write(uc, q, 1000) != 1000) return 2;
  for (int k = 0; k < 700; k++) q[k] = gen((uint64_t)k, 4);
  if (write(us, q, 700) != 700) return 2;
  char unix_state[96] = "pending";
  unsigned long udp = 0, unix_hello = 0, accepted = 0;
  double last_tick = now_ms();
  for (;;) {
    struct pollfd p[MAXC + 3];
    p[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
    p[1] = (struct pollfd){.fd = ufd, .events = POLLIN};
    p[2] = (struct pollfd){.fd = xl, .events = POLLIN};
    for (int i = 0; i < nconns; i++) p[3 + i] = (struct pollfd){.fd = conns[i].fd, .events = conns[i].mode == 'S' ? POLLOUT : POLLIN};
    int n = nconns;
    poll(p, (nfds_t)(3 + n), 10);
    int tick = now_ms() - last_tick >= 50;
    if (tick) last_tick = now_ms();
    for (int i = n - 1; i >= 0; i--) serve(i, p[3 + i].revents, tick);
    if (p[0].revents & POLLIN) {
      int fd = accept4(lfd, 0, 0, SOCK_NONBLOCK);
      if (fd >= 0 && nconns < MAXC) conns[nconns++] = (struct conn){.fd = fd}, accepted++;
      else if (fd >= 0) close(fd);
    }
    if (p[1].revents & POLLIN) {
      uint8_t d[2048];
      struct sockaddr_storage from;
      socklen_t fl = sizeof from;
      ssize_t m = recvfrom(ufd, d, sizeof d, 0, (void *)&from, &fl);
      if (m > 0 && sendto(ufd, d, (size_t)m, 0, (void *)&from, fl) == m) udp++;
    }
    if (p[2].revents & POLLIN) {
      int fd = accept4(xl, 0, 0, 0);
      if (fd >= 0) {
        if (write(fd, "hello-unix\n", 11) == 11) unix_hello++;
        close(fd);
      }
    }
    if (!strcmp(unix_state, "pending") && access(argv[3], F_OK) == 0) {
      uint8_t a[1001], b[701];
      ssize_t na = recv(us, a, sizeof a, MSG_DONTWAIT), nb = recv(uc, b, sizeof b, MSG_DONTWAIT);
      if (na != 1000 || nb != 700) snprintf(unix_state, sizeof unix_state, "FAIL queued %zd/1000 and %zd/700 bytes", na, nb);
      else if (check_bytes(a, 1000, 0, 3, "unix end 1") || check_bytes(b, 700, 0, 4, "unix end 2")) snprintf(unix_state, sizeof unix_state, "FAIL bytes");
      else snprintf(unix_state, sizeof unix_state, "ok");
    }
    if (tick) {
      char body[4096];
      int o = snprintf(body, sizeof body, "\"pid\":%d,\"accepted\":%lu,\"udp\":%lu,\"unixHello\":%lu,\"unix\":\"%s\",\"streams\":[", getpid(), accepted, udp, unix_hello, unix_state);
      int first = 1;
      for (int i = 0; i < nconns && o < 3900; i++)
        if (conns[i].mode == 'S') o += snprintf(body + o, sizeof body - (size_t)o, "%s{\"rx\":%llu,\"tx\":%llu}", first ? "" : ",", (unsigned long long)conns[i].rx, (unsigned long long)conns[i].tx), first = 0;
      snprintf(body + o, sizeof body - (size_t)o, "]");
      write_status(argv[1], body);
    }
  }
}
