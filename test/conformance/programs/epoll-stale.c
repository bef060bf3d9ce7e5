/* epoll registrations keep their (file, fd number) keys, even when the fd number they were made
 * through was closed and reused: here fd A registers an eventfd, A is dup'ed to B and closed, and
 * a pipe opened on A's number is registered too. fdinfo then lists tfd A twice. */
#include "conformance.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>

int main(int argc, char **argv) {
  cf_init(argc, argv);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int ev = eventfd(0, EFD_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 111};
  if (ep < 0 || ev < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0) cf_skip("epoll: %s", strerror(errno));
  int a = ev;
  int b = dup(ev);
  close(a);
  int p[2];
  if (pipe2(p, O_NONBLOCK) != 0) cf_skip("pipe");
  if (p[0] != a) {
    if (dup2(p[0], a) != a) cf_skip("dup2");
    close(p[0]);
    p[0] = a;
  }
  struct epoll_event e2 = {.events = EPOLLIN, .data.u64 = 222};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, a, &e2) != 0) cf_skip("epoll_ctl: %s", strerror(errno));
  cf_ready();
  cf_wait_restored();
  struct epoll_event out[4];
  CF_CHECK(epoll_wait(ep, out, 4, 0) == 0, "epoll fd %d: ready before anything was written", ep);
  uint64_t one = 1;
  CF_CHECK(write(b, &one, 8) == 8, "eventfd write");
  int n = epoll_wait(ep, out, 4, 0);
  CF_CHECK(n == 1 && out[0].data.u64 == 111, "epoll fd %d: eventfd (registered as fd %d, now fd %d): expected data 111, got %d events, data %llu", ep, a, b, n, n > 0 ? (unsigned long long)out[0].data.u64 : 0ULL);
  CF_CHECK(read(b, &one, 8) == 8, "eventfd read");
  CF_CHECK(write(p[1], "x", 1) == 1, "pipe write");
  n = epoll_wait(ep, out, 4, 0);
  CF_CHECK(n == 1 && out[0].data.u64 == 222, "epoll fd %d: pipe (fd %d): expected data 222, got %d events", ep, a, n);
  /* The eventfd's key is (eventfd, fd A): through B it is not registered. */
  struct epoll_event m = {.events = EPOLLIN, .data.u64 = 333};
  CF_CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, b, &m) == -1 && errno == ENOENT, "epoll fd %d: the eventfd is registered under fd %d, expected only under fd %d", ep, b, a);
  CF_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, a, NULL) == 0, "epoll fd %d: the pipe is not registered under fd %d: %s", ep, a, strerror(errno));
  cf_pass();
}
