/* ymm-poke TID REG LANE: stop thread TID with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT), flip
 * every bit of 64-bit lane LANE (0..3; 2 and 3 are the upper 128 bits) of register ymmREG in
 * its saved XSAVE state (NT_X86_XSTATE, standard format: xmm at 160, YMM_Hi128 at 576), and let
 * it go. Used to show that threads-avx notices a register it holds changing under it.
 * Exit status 0 on success; prints the reason on stderr otherwise. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s TID REG(0-15) LANE(0-3)\n", argv[0]);
    return 2;
  }
  pid_t tid = atoi(argv[1]);
  int reg = atoi(argv[2]), lane = atoi(argv[3]);
  if (reg < 0 || reg > 15 || lane < 0 || lane > 3) return 2;
  if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
    fprintf(stderr, "PTRACE_SEIZE %d: %s\n", tid, strerror(errno));
    return 1;
  }
  int rc = 1;
  if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) {
    fprintf(stderr, "PTRACE_INTERRUPT: %s\n", strerror(errno));
    goto out;
  }
  int st;
  if (waitpid(tid, &st, __WALL) != tid) {
    fprintf(stderr, "waitpid: %s\n", strerror(errno));
    goto out;
  }
  static uint8_t buf[16384] __attribute__((aligned(64)));
  struct iovec iov = {buf, sizeof buf};
  if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) != 0) {
    fprintf(stderr, "PTRACE_GETREGSET: %s\n", strerror(errno));
    goto out;
  }
  if (iov.iov_len < 576 + 256) {
    fprintf(stderr, "xstate too small (%zu bytes): no AVX state\n", iov.iov_len);
    goto out;
  }
  uint64_t *xstate_bv = (uint64_t *)(buf + 512);
  *xstate_bv |= 0x6; /* SSE + AVX components present */
  size_t off = lane < 2 ? 160 + (size_t)reg * 16 + (size_t)lane * 8 : 576 + (size_t)reg * 16 + (size_t)(lane - 2) * 8;
  uint64_t v;
  memcpy(&v, buf + off, 8);
  v = ~v;
  memcpy(buf + off, &v, 8);
  if (ptrace(PTRACE_SETREGSET, tid, (void *)NT_X86_XSTATE, &iov) != 0) {
    fprintf(stderr, "PTRACE_SETREGSET: %s\n", strerror(errno));
    goto out;
  }
  rc = 0;
out:
  ptrace(PTRACE_DETACH, tid, 0, 0);
  return rc;
}
