// Parent and child talk through a named pipe (mkfifo in argv[1]'s directory): the child writes
// a numbered stream quickly, the parent reads it slowly, so the FIFO usually holds unread data.
// The parent prints "tick N" while the stream is gap-free, "FAIL <why>" and exits 3 otherwise.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  unlink(argv[1]);
  if (mkfifo(argv[1], 0600)) return 2;
  pid_t parent = getpid();
  pid_t c = fork();
  if (c == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int w = open(argv[1], O_WRONLY);
    for (uint64_t seq = 0;; seq++) {
      uint64_t rec[2] = {seq, seq * 0x9e3779b97f4a7c15ull};
      if (write(w, rec, sizeof rec) != sizeof rec) return 4;
      if (getppid() != parent) return 5;
      if (seq % 64 == 0) usleep(1000);
    }
  }
  int r = open(argv[1], O_RDONLY);
  struct timespec ts = {0, 2000000};
  for (uint64_t want = 0, tick = 0;; tick++) {
    for (int i = 0; i < 16; i++, want++) {
      uint64_t rec[2];
      ssize_t n = read(r, rec, sizeof rec);
      if (n != sizeof rec) { printf("FAIL short read %zd\n", n); return 3; }
      if (rec[0] != want || rec[1] != want * 0x9e3779b97f4a7c15ull) { printf("FAIL got %llu want %llu\n", (unsigned long long)rec[0], (unsigned long long)want); return 3; }
    }
    if (tick % 20 == 0) printf("tick %llu seq %llu\n", (unsigned long long)tick, (unsigned long long)want);
    nanosleep(&ts, NULL);
  }
}
