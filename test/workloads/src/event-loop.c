/* event-loop: epoll over an eventfd, a periodic timerfd (10 ms, CLOCK_MONOTONIC),
 * a signalfd (SIGUSR1 blocked, sent to self with sigqueue) and a unix
 * socketpair whose read end is registered with a changing event mask.
 * Invariants: eventfd reads return exactly the sum written since the last
 * read; timerfd never reports more expirations than elapsed time allows and,
 * in windows without a freeze gap, does not lose expirations; every SIGUSR1
 * sent is received once, from this pid, with the value it was sent with, and
 * a pending one is seen by the next epoll_wait; the socketpair byte stream is
 * gap-free; epoll only returns registered tags; timerfd keeps its interval. */
#include "wl_common.h"
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define TICK_NS 10000000LL
#define TICK_S 0.01
#define GAP_S 1.0

enum { TAG_EFD = 0x1001, TAG_TFD = 0x1002, TAG_SFD = 0x1003, TAG_SOCK = 0x1004 };

int main(int argc, char **argv) {
  wl_init("event-loop", argc, argv);
  pid_t pid = getpid();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int efd = eventfd(0, EFD_NONBLOCK);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  sigset_t ss;
  sigemptyset(&ss);
  sigaddset(&ss, SIGUSR1);
  sigprocmask(SIG_BLOCK, &ss, NULL);
  int sfd = signalfd(-1, &ss, SFD_NONBLOCK);
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
  struct itimerspec its = {{0, TICK_NS}, {0, TICK_NS}};
  timerfd_settime(tfd, 0, &its, NULL);
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLET; /* one event per write: the counter can stay non-zero */
  ev.data.u64 = TAG_EFD;
  epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
  ev.events = EPOLLIN;
  ev.data.u64 = TAG_TFD;
  epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
  ev.data.u64 = TAG_SFD;
  epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
  ev.events = 0; /* socket starts in the fill phase */
  ev.data.u64 = TAG_SOCK;
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);

  double start = wl_mono(), last_loop = start, last_status = 0, last_timer_read = start;
  double win_start = start, max_loop_gap = 0;
  uint64_t win_exp = 0, timer_exp = 0, gaps = 0;
  uint64_t efd_pending = 0, efd_writes = 0, efd_reads = 0, efd_total = 0;
  uint64_t sig_sent = 0, sig_recv = 0;
  int sig_pending = 0, sig_pending_waits = 0;
  uint64_t sock_rseq = 0, sock_bytes_w = 0, sock_bytes_r = 0;
  unsigned char sock_partial[8];
  size_t sock_plen = 0;
  int draining = 0;
  double phase_start = start;
  uint64_t iter = 0; /* rounds */
  double last_round = 0;

  for (;;) {
    if (wl_mono() - last_round < TICK_S) goto wait;
    last_round = wl_mono();
    iter++;
    /* eventfd: add a value; leave the counter non-zero between reads */
    uint64_t add = iter % 7 + 1;
    if (write(efd, &add, 8) == 8) {
      efd_pending += add;
      efd_writes++;
    }
    /* signal: one in flight at a time (standard signals coalesce) */
    if (!sig_pending) {
      union sigval v;
      v.sival_int = (int)(sig_sent & 0x7fffffff);
      if (sigqueue(pid, SIGUSR1, v) == 0) {
        sig_sent++;
        sig_pending = 1;
        sig_pending_waits = 0;
      }
    }
    /* socket: write 512 bytes of the record stream every round (partial writes allowed) */
    {
      unsigned char wb[65 * 8];
      uint64_t first = sock_bytes_w / 8;
      for (uint64_t k = 0; k < 65; k++) {
        uint64_t rec = wl_mix64(first + k) ^ (first + k);
        memcpy(wb + k * 8, &rec, 8);
      }
      ssize_t w = write(sv[0], wb + sock_bytes_w % 8, 512);
      if (w > 0) sock_bytes_w += (uint64_t)w;
    }
    if (!draining && wl_mono() - phase_start > 0.3) {
      draining = 1;
      phase_start = wl_mono();
      ev.events = EPOLLIN;
      ev.data.u64 = TAG_SOCK;
      epoll_ctl(ep, EPOLL_CTL_MOD, sv[1], &ev);
    }

  wait:;
    struct epoll_event evs[8];
    int n = epoll_wait(ep, evs, 8, 10);
    if (sig_pending) sig_pending_waits++;
    double now = wl_mono();
    double loop_gap = now - last_loop;
    last_loop = now;
    if (loop_gap > max_loop_gap) max_loop_gap = loop_gap;
    if (loop_gap > GAP_S) { /* frozen (checkpoint) or badly starved: restart the loss window */
      gaps++;
      win_start = now;
      win_exp = 0;
    }
    int saw_sig = 0;
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      if (tag == TAG_EFD) {
        if (iter % 2) continue; /* read every other round */
        uint64_t v;
        if (read(efd, &v, 8) == 8) {
          if (v != efd_pending)
            wl_fail("eventfd read %llu, expected %llu (sum of writes since the last read)", (unsigned long long)v,
                    (unsigned long long)efd_pending);
          efd_total += v;
          efd_pending = 0;
          efd_reads++;
        }
      } else if (tag == TAG_TFD) {
        uint64_t exp;
        if (read(tfd, &exp, 8) == 8) {
          double since = now - last_timer_read;
          uint64_t allowed = (uint64_t)(since / TICK_S) + 3;
          if (exp > allowed)
            wl_fail("timerfd reported %llu expirations in %.3f s (at most %llu possible)", (unsigned long long)exp,
                    since, (unsigned long long)allowed);
          last_timer_read = now;
          timer_exp += exp;
          if (loop_gap <= GAP_S) win_exp += exp;
        }
      } else if (tag == TAG_SFD) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
          saw_sig = 1;
          if (si.ssi_signo != SIGUSR1) wl_fail("signalfd returned signal %u", si.ssi_signo);
          else if ((pid_t)si.ssi_pid != pid || si.ssi_code != SI_QUEUE)
            wl_fail("SIGUSR1 from a foreign sender: pid %u code %d (expected sigqueue from %d)", si.ssi_pid,
                    si.ssi_code, (int)pid);
          else if (!sig_pending)
            wl_fail("SIGUSR1 received but none was pending (sent %llu, received %llu)", (unsigned long long)sig_sent,
                    (unsigned long long)sig_recv);
          else if ((uint32_t)si.ssi_int != (uint32_t)((sig_sent - 1) & 0x7fffffff))
            wl_fail("SIGUSR1 carried value %d, expected %llu", si.ssi_int,
                    (unsigned long long)((sig_sent - 1) & 0x7fffffff));
          sig_recv++;
          sig_pending = 0;
        }
      } else if (tag == TAG_SOCK) {
        if (!draining) wl_fail("epoll reported the socket readable while its event mask is empty");
        unsigned char buf[8192];
        ssize_t r;
        while ((r = read(sv[1], buf + sock_plen, sizeof buf - sock_plen)) > 0) {
          memcpy(buf, sock_partial, sock_plen);
          size_t total = sock_plen + (size_t)r;
          size_t recs = total / 8;
          for (size_t j = 0; j < recs; j++) {
            uint64_t rec;
            memcpy(&rec, buf + j * 8, 8);
            if (rec != (wl_mix64(sock_rseq) ^ sock_rseq)) {
              wl_fail("socketpair stream broken at record %llu (byte %llu)", (unsigned long long)sock_rseq,
                      (unsigned long long)sock_bytes_r);
            }
            sock_rseq++;
            sock_bytes_r += 8;
          }
          sock_plen = total - recs * 8;
          memcpy(sock_partial, buf + recs * 8, sock_plen);
        }
        if (sock_bytes_r + sock_plen == sock_bytes_w) {
          draining = 0;
          phase_start = now;
          ev.events = 0;
          ev.data.u64 = TAG_SOCK;
          epoll_ctl(ep, EPOLL_CTL_MOD, sv[1], &ev);
        }
      } else {
        wl_fail("epoll returned an unknown tag 0x%llx", (unsigned long long)tag);
      }
    }
    if (sig_pending && !saw_sig && sig_pending_waits > 20)
      wl_fail("SIGUSR1 #%llu lost: pending for %d epoll_wait calls without being seen", (unsigned long long)sig_sent,
              sig_pending_waits);
    double win = now - win_start;
    if (win > 2.0) {
      double expected = win / TICK_S;
      if ((double)win_exp < expected * 0.5 - 5)
        wl_fail("timerfd lost expirations: %llu in %.2f s without a freeze gap (expected about %.0f)",
                (unsigned long long)win_exp, win, expected);
      /* slide the window */
      win_start = now;
      win_exp = 0;
    }
    if (now - last_status > 0.05) {
      last_status = now;
      struct itimerspec cur;
      timerfd_gettime(tfd, &cur);
      if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != TICK_NS)
        wl_fail("timerfd interval changed to %lld.%09ld s", (long long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
      if (getpid() != pid) wl_fail("getpid() changed from %d to %d", (int)pid, (int)getpid());
      wl_status(iter,
                "\"pids\":[%d],\"eventfd_writes\":%llu,\"eventfd_reads\":%llu,\"eventfd_total\":%llu,"
                "\"timer_expirations\":%llu,\"elapsed_s\":%.3f,\"signals_sent\":%llu,\"signals_received\":%llu,"
                "\"sock_bytes_written\":%llu,\"sock_bytes_read\":%llu,\"sock_backlog\":%llu,\"freeze_gaps\":%llu,"
                "\"max_loop_gap_ms\":%.1f",
                (int)pid, (unsigned long long)efd_writes, (unsigned long long)efd_reads,
                (unsigned long long)efd_total, (unsigned long long)timer_exp, now - start,
                (unsigned long long)sig_sent, (unsigned long long)sig_recv, (unsigned long long)sock_bytes_w,
                (unsigned long long)sock_bytes_r, (unsigned long long)(sock_bytes_w - sock_bytes_r),
                (unsigned long long)gaps, max_loop_gap * 1000);
    }
  }
}
