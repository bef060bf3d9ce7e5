/* tree-pipes: a process tree exchanging sequence-numbered messages over pipes.
 *   root ──a──> c1 ──b──> gc ──c──> root      (ring)
 *   root ──d──> c2 ──e──> root                (echo, c2 is in its own process group)
 * Each process checks message sequence continuity and checksums, and that
 * getpid(), getpgid(0) and getsid(0) never change, and the children that
 * getppid() never changes. The readers
 * read slowly so the pipes hold unread data most of the time. Children write
 * their own status file (STATUS.<role>) and report to the root through a
 * shared report pipe; the root's status aggregates them (ok=false if any
 * process reports a violation). */
#include "wl_common.h"
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define MAGIC 0x5eed5eed5eed5eedULL
#define WINDOW 400 /* max messages in flight on each path */

struct msg {
  uint64_t seq;
  uint64_t check;
};

struct report {
  int role;
  int pid;
  int ok;
  unsigned long long progress;
  char err[200];
};

enum { ROOT, C1, GC, C2, NROLES };
static const char *role_names[NROLES] = {"root", "c1", "gc", "c2"};

static int role = ROOT;
static pid_t my_pid, my_ppid, my_pgid, my_sid;
static int report_w = -1;
static char role_status[4200];

static uint64_t check_of(uint64_t seq, int path) { return wl_mix64(seq ^ MAGIC ^ ((uint64_t)path << 56)); }

static void identity_init(void) {
  my_pid = getpid();
  my_ppid = getppid();
  my_pgid = getpgid(0);
  my_sid = getsid(0);
}

static void identity_check(void) {
  const char *r = role_names[role];
  if (getpid() != my_pid) wl_fail("%s: getpid() changed from %d to %d", r, (int)my_pid, (int)getpid());
  /* the root's parent is the launcher, which exits: it is re-parented, so only children check */
  if (role != ROOT && getppid() != my_ppid) wl_fail("%s: getppid() changed from %d to %d", r, (int)my_ppid, (int)getppid());
  if (getpgid(0) != my_pgid) wl_fail("%s: getpgid() changed from %d to %d", r, (int)my_pgid, (int)getpgid(0));
  if (getsid(0) != my_sid) wl_fail("%s: getsid() changed from %d to %d", r, (int)my_sid, (int)getsid(0));
}

/* Read whole messages from fd (non-blocking), at most max. Returns count, -1 on EOF. */
static int read_msgs(int fd, struct msg *buf, int max, char *partial, size_t *plen) {
  char raw[sizeof(struct msg) * 64];
  size_t want = sizeof(struct msg) * (size_t)max;
  if (want > sizeof raw) want = sizeof raw;
  memcpy(raw, partial, *plen);
  ssize_t n = read(fd, raw + *plen, want - *plen);
  if (n == 0) return -1;
  if (n < 0) return 0;
  size_t total = *plen + (size_t)n;
  int cnt = (int)(total / sizeof(struct msg));
  memcpy(buf, raw, (size_t)cnt * sizeof(struct msg));
  *plen = total - (size_t)cnt * sizeof(struct msg);
  memcpy(partial, raw + (size_t)cnt * sizeof(struct msg), *plen);
  return cnt;
}

static void write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, 100);
        continue;
      }
      wl_fail("%s: write to pipe failed: %s", role_names[role], strerror(errno));
      return;
    }
    c += w;
    n -= (size_t)w;
  }
}

static void child_report(unsigned long long progress, const char *extra) {
  struct report r;
  memset(&r, 0, sizeof r);
  r.role = role;
  r.pid = (int)my_pid;
  r.ok = wl_ok();
  r.progress = progress;
  if (!r.ok) snprintf(r.err, sizeof r.err, "%.199s", wl_err);
  ssize_t _w = write(report_w, &r, sizeof r); /* O_NONBLOCK: dropped if the pipe is full */
  (void)_w;
  wl_write_status_to(role_status, role_names[role], progress, r.ok, wl_err, extra);
}

/* A forwarding/echoing child: read from in (path pin), check, write to out (path pout). */
static void relay(int in, int pin, int out, int pout, int slow_ms) {
  uint64_t expect = 0;
  char partial[sizeof(struct msg)];
  size_t plen = 0;
  double last_report = 0;
  unsigned long long progress = 0;
  for (;;) {
    struct pollfd pf = {in, POLLIN, 0};
    poll(&pf, 1, 50);
    struct msg m[16];
    int n = read_msgs(in, m, 16, partial, &plen);
    if (n < 0) wl_fail("%s: upstream pipe closed", role_names[role]);
    for (int i = 0; i < n; i++) {
      if (m[i].seq != expect || m[i].check != check_of(m[i].seq, pin)) {
        wl_fail("%s: bad message on pipe: seq %llu check 0x%016llx, expected seq %llu", role_names[role],
                (unsigned long long)m[i].seq, (unsigned long long)m[i].check, (unsigned long long)expect);
        expect = m[i].seq;
      }
      expect++;
      m[i].check = check_of(m[i].seq, pout);
      progress++;
    }
    if (n > 0) write_all(out, m, (size_t)n * sizeof(struct msg));
    identity_check();
    double now = wl_mono();
    if (now - last_report > 0.05) {
      last_report = now;
      char extra[256];
      snprintf(extra, sizeof extra, "\"role\":\"%s\",\"ppid\":%d,\"pgid\":%d,\"sid\":%d,\"next_seq\":%llu",
               role_names[role], (int)my_ppid, (int)my_pgid, (int)my_sid, (unsigned long long)expect);
      child_report(progress, extra);
    }
    if (slow_ms) wl_sleep_ms(slow_ms); /* keep unread data in the pipes */
  }
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int main(int argc, char **argv) {
  wl_init("tree-pipes", argc, argv);
  signal(SIGPIPE, SIG_IGN);
  int a[2], b[2], c[2], d[2], e[2], rep[2];
  if (pipe(a) || pipe(b) || pipe(c) || pipe(d) || pipe(e) || pipe(rep)) return 1;
  int all[] = {a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1], e[0], e[1], rep[0], rep[1]};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) set_nonblock(all[i]);
  report_w = rep[1];
  pid_t root = getpid();

  pid_t c1 = fork();
  if (c1 == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    role = C1;
    pid_t gc = fork();
    if (gc == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      role = GC;
      identity_init();
      snprintf(role_status, sizeof role_status, "%s.gc", wl_path);
      close(a[0]), close(a[1]), close(b[1]), close(c[0]), close(d[0]), close(d[1]), close(e[0]), close(e[1]),
          close(rep[0]);
      relay(b[0], 1, c[1], 2, 15);
    }
    identity_init();
    snprintf(role_status, sizeof role_status, "%s.c1", wl_path);
    close(a[1]), close(b[0]), close(c[0]), close(c[1]), close(d[0]), close(d[1]), close(e[0]), close(e[1]),
        close(rep[0]);
    relay(a[0], 0, b[1], 1, 10);
  }
  pid_t c2 = fork();
  if (c2 == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    role = C2;
    setpgid(0, 0);
    identity_init();
    snprintf(role_status, sizeof role_status, "%s.c2", wl_path);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]), close(c[0]), close(c[1]), close(d[1]), close(e[0]),
        close(rep[0]);
    relay(d[0], 3, e[1], 4, 20);
  }
  setpgid(c2, c2); /* also from the parent, to avoid the race */
  identity_init();
  close(a[0]), close(b[0]), close(b[1]), close(c[1]), close(d[0]), close(e[1]), close(rep[1]);

  uint64_t ring_sent = 0, ring_recv = 0, echo_sent = 0, echo_recv = 0;
  char pc[sizeof(struct msg)], pe[sizeof(struct msg)];
  size_t pcl = 0, pel = 0;
  struct report reps[NROLES];
  memset(reps, 0, sizeof reps);
  int gc_pid = 0;
  double last_status = 0;
  for (;;) {
    /* keep up to WINDOW messages in flight on each path */
    struct msg out[64];
    int n = 0;
    while (n < 64 && ring_sent - ring_recv < WINDOW) {
      out[n].seq = ring_sent;
      out[n].check = check_of(ring_sent, 0);
      n++;
      ring_sent++;
    }
    if (n) write_all(a[1], out, (size_t)n * sizeof(struct msg));
    n = 0;
    while (n < 64 && echo_sent - echo_recv < WINDOW) {
      out[n].seq = echo_sent;
      out[n].check = check_of(echo_sent, 3);
      n++;
      echo_sent++;
    }
    if (n) write_all(d[1], out, (size_t)n * sizeof(struct msg));

    struct pollfd pf[3] = {{c[0], POLLIN, 0}, {e[0], POLLIN, 0}, {rep[0], POLLIN, 0}};
    poll(pf, 3, 20);
    struct msg in[64];
    int k = read_msgs(c[0], in, 64, pc, &pcl);
    if (k < 0) wl_fail("root: ring return pipe closed");
    for (int i = 0; i < k; i++) {
      if (in[i].seq != ring_recv || in[i].check != check_of(in[i].seq, 2)) {
        wl_fail("root: bad message back from the ring: seq %llu, expected %llu", (unsigned long long)in[i].seq,
                (unsigned long long)ring_recv);
        ring_recv = in[i].seq;
      }
      ring_recv++;
    }
    k = read_msgs(e[0], in, 64, pe, &pel);
    if (k < 0) wl_fail("root: echo pipe from c2 closed");
    for (int i = 0; i < k; i++) {
      if (in[i].seq != echo_recv || in[i].check != check_of(in[i].seq, 4)) {
        wl_fail("root: bad echo from c2: seq %llu, expected %llu", (unsigned long long)in[i].seq,
                (unsigned long long)echo_recv);
        echo_recv = in[i].seq;
      }
      echo_recv++;
    }
    struct report r;
    while (read(rep[0], &r, sizeof r) == (ssize_t)sizeof r) {
      if (r.role <= ROOT || r.role >= NROLES) {
        wl_fail("root: garbage on the report pipe");
        continue;
      }
      if (reps[r.role].pid && reps[r.role].pid != r.pid)
        wl_fail("root: %s's pid changed from %d to %d", role_names[r.role], reps[r.role].pid, r.pid);
      if (r.progress < reps[r.role].progress)
        wl_fail("root: %s's progress went backwards", role_names[r.role]);
      reps[r.role] = r;
      if (r.role == GC) gc_pid = r.pid;
      if (!r.ok) wl_fail("%s", r.err);
    }
    int st;
    pid_t dead = waitpid(-1, &st, WNOHANG);
    if (dead > 0) wl_fail("root: child %d exited (status 0x%x)", (int)dead, st);
    identity_check();
    if (getpid() != root) wl_fail("root: pid changed");

    double now = wl_mono();
    if (now - last_status > 0.05) {
      last_status = now;
      wl_status(ring_recv + echo_recv,
                "\"pids\":[%d,%d,%d,%d],\"roles\":{\"c1\":%d,\"gc\":%d,\"c2\":%d},\"ring_sent\":%llu,"
                "\"ring_recv\":%llu,\"echo_sent\":%llu,\"echo_recv\":%llu,\"children_progress\":{\"c1\":%llu,"
                "\"gc\":%llu,\"c2\":%llu},\"ring_write_fd\":%d,\"c2_pgid\":%d,\"sid\":%d",
                (int)root, (int)c1, gc_pid, (int)c2, (int)c1, gc_pid, (int)c2, (unsigned long long)ring_sent,
                (unsigned long long)ring_recv, (unsigned long long)echo_sent, (unsigned long long)echo_recv,
                reps[C1].progress, reps[GC].progress, reps[C2].progress, a[1], (int)getpgid(c2), (int)my_sid);
    }
  }
}
