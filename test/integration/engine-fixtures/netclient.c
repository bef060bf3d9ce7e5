// The client side of netserver.c, run from another network namespace:
//   netclient stream IP PORT STATUS  full-duplex stream, every byte checked, read slowly
//   netclient ping IP PORT STATUS    16 bytes every 5 ms, echoed; the longest round trip is the pause a client sees
//   netclient hello IP PORT          one line from a new connection, on stdout
//   netclient udp IP PORT            one datagram echoed, on stdout
#include "netcommon.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOW_READ 4096 /* bytes per 50 ms: the server's send queue stays full */

static int dial(const char *ip, int port, int type) {
  int fd = socket(AF_INET, type, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (connect(fd, (void *)&a, sizeof a)) {
    fprintf(stderr, "connect: %s\n", strerror(errno));
    exit(1);
  }
  return fd;
}

static uint64_t rx, tx;
static double max_gap;
static void stream_status(const char *status) {
  char body[256];
  snprintf(body, sizeof body, "\"rx\":%llu,\"tx\":%llu,\"maxGapMs\":%.1f", (unsigned long long)rx, (unsigned long long)tx, max_gap);
  write_status(status, body);
}

static void stream(int fd, const char *status) {
  uint8_t buf[65536];
  double last_tick = now_ms(), last_rx = now_ms();
  fcntl(fd, F_SETFL, O_NONBLOCK);
  while (!failed) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    poll(&p, 1, 10);
    if (p.revents & POLLOUT) {
      for (size_t k = 0; k < sizeof buf; k++) buf[k] = gen(tx + k, 1);
      ssize_t w = write(fd, buf, sizeof buf);
      if (w > 0) tx += (uint64_t)w;
      else if (w < 0 && errno != EAGAIN) failf("stream write: %s", strerror(errno));
    }
    if (now_ms() - last_tick < 50) continue;
    last_tick = now_ms();
    ssize_t n = read(fd, buf, SLOW_READ);
    if (n == 0) failf("stream: the server closed");
    if (n < 0 && errno != EAGAIN) failf("stream read: %s", strerror(errno));
    if (n > 0) {
      check_bytes(buf, (size_t)n, rx, 2, "client stream");
      rx += (uint64_t)n;
      if (now_ms() - last_rx > max_gap) max_gap = now_ms() - last_rx;
      last_rx = now_ms();
    }
    stream_status(status);
  }
  stream_status(status);
  for (;;) pause();
}

static unsigned long count;
static double max_rtt, last_rtt;
static void ping_status(const char *status) {
  char body[256];
  snprintf(body, sizeof body, "\"count\":%lu,\"maxRttMs\":%.2f,\"lastRttMs\":%.2f", count, max_rtt, last_rtt);
  write_status(status, body);
}

static void ping(int fd, const char *status) {
  double last_status = 0;
  while (!failed) {
    uint8_t m[16], r[16];
    for (int k = 0; k < 16; k++) m[k] = gen(count * 16 + (uint64_t)k, 5);
    double t0 = now_ms();
    if (write(fd, m, 16) != 16) failf("ping write: %s", strerror(errno));
    size_t got = 0;
    while (!failed && got < 16) {
      ssize_t n = read(fd, r + got, 16 - got);
      if (n <= 0) failf("ping read: %s", n == 0 ? "closed" : strerror(errno));
      else got += (size_t)n;
    }
    if (!failed && memcmp(m, r, 16)) failf("ping %lu: echo differs", count);
    last_rtt = now_ms() - t0;
    if (last_rtt > max_rtt) max_rtt = last_rtt;
    count++;
    if (now_ms() - last_status > 20) {
      ping_status(status);
      last_status = now_ms();
    }
    usleep(5000);
  }
  ping_status(status);
  for (;;) pause();
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  signal(SIGPIPE, SIG_IGN);
  const char *mode = argv[1], *ip = argv[2];
  int port = atoi(argv[3]);
  if (!strcmp(mode, "udp")) {
    int fd = dial(ip, port, SOCK_DGRAM);
    char b[64];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int tries = 0; tries < 10; tries++) {
      if (write(fd, "ping-udp", 8) != 8) return 1;
      if (poll(&p, 1, 300) == 1) {
        ssize_t n = read(fd, b, sizeof b - 1);
        if (n > 0) return b[n] = 0, printf("%s\n", b), 0;
      }
    }
    return 1;
  }
  int fd = dial(ip, port, SOCK_STREAM);
  char m = mode[0] == 's' ? 'S' : mode[0] == 'p' ? 'P' : 'H';
  if (write(fd, &m, 1) != 1) return 1;
  if (m == 'H') {
    char b[64];
    ssize_t n = read(fd, b, sizeof b - 1);
    if (n <= 0) return 1;
    b[n] = 0;
    fputs(b, stdout);
    return 0;
  }
  if (argc < 5) return 2;
  if (m == 'S') stream(fd, argv[4]);
  ping(fd, argv[4]);
}
