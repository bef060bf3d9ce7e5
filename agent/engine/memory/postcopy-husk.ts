// A restored process made ready for post-copy (agent/migration/postcopy-destination.ts), while
// its husk is still stopped: the pages the source still holds newer copies of are dropped (the
// husk may hold an older one from a pre-copy round), and a userfaultfd made inside it registers
// those mappings for missing-page faults. The uffd is made by the husk itself (only its own mm can
// register), while it is still root: without UFFD_USER_MODE_ONLY the kernel's own accesses to a
// missing page (a read(2) into it) wait for the page instead of failing with EFAULT.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { runCode } from '../../ffi/ptrace.ts';
import { closeFd, pidfdGetfd, pidfdOpen } from '../../ffi/syscalls.ts';
import { UFFD_MISSING_FEATURES, UFFD_MISSING_OPEN_FLAGS, uffdApi, uffdRegisterMissing } from '../../ffi/uffd.ts';
import type { HuskProcess } from '../process/husk-core.ts';
import type { Span } from './dirty/types.ts';

/** Where in the husk's scratch area the loop and its list go (clear of the OFF_* areas below). */
const OFF_CODE = 0x8000n;
const OFF_LIST = 0x8100n;
const LIST_MAX = Number((0x10000n - OFF_LIST) / 16n);

/**
 * rdi: a list of (addr, len) pairs, rsi: their count. madvise(addr, len, MADV_DONTNEED) each;
 * int3 with rax 0, or with the failing call's result in rax and the pairs left in r13.
 */
const DONTNEED_LOOP = Buffer.from([
  0x49, 0x89, 0xfc, //             mov r12, rdi
  0x49, 0x89, 0xf5, //             mov r13, rsi
  0x4d, 0x85, 0xed, //       loop: test r13, r13
  0x74, 0x23, //                   je done
  0x49, 0x8b, 0x3c, 0x24, //       mov rdi, [r12]
  0x49, 0x8b, 0x74, 0x24, 0x08, // mov rsi, [r12 + 8]
  0xba, 0x04, 0x00, 0x00, 0x00, // mov edx, MADV_DONTNEED
  0xb8, 0x1c, 0x00, 0x00, 0x00, // mov eax, SYS_madvise
  0x0f, 0x05, //                   syscall
  0x48, 0x85, 0xc0, //             test rax, rax
  0x75, 0x0b, //                   jne fail
  0x49, 0x83, 0xc4, 0x10, //       add r12, 16
  0x49, 0xff, 0xcd, //             dec r13
  0xeb, 0xd8, //                   jmp loop
  0x31, 0xc0, //             done: xor eax, eax
  0xcc, //                   fail: int3
]);

/** Drops the pages of `runs` from the husk (they read as missing after), in batches of one injected loop each. */
export function dropPages(h: HuskProcess, runs: readonly Span[]): void {
  if (runs.length === 0) return;
  const code = h.put(OFF_CODE, DONTNEED_LOOP);
  for (let i = 0; i < runs.length; i += LIST_MAX) {
    const batch = runs.slice(i, i + LIST_MAX);
    const list = Buffer.alloc(batch.length * 16);
    batch.forEach((r, j) => {
      list.writeBigUInt64LE(BigInt(r.start), j * 16);
      list.writeBigUInt64LE(BigInt(r.end - r.start), j * 16 + 8);
    });
    const at = h.put(OFF_LIST, list);
    const { rax, r13 } = runCode(h.pid, code, at, BigInt(batch.length));
    if (rax !== 0n) {
      const bad = batch[batch.length - Number(r13)];
      throw new FerryError(ErrorCode.Internal, `process ${h.pid}: dropping pages for post-copy failed at ${bad ? bad.start.toString(16) : '?'} (errno ${-rax})`);
    }
  }
}

/**
 * A userfaultfd of the husk's memory, held by the agent only, nothing registered yet (that comes
 * last, once nothing of the restore touches memory any more: the kernel's own writes, as rseq's
 * registration, would wait on a missing page for the agent that is busy restoring). Made while
 * the husk is still root. Refused (Unsupported) where the husk may not make one.
 */
export function missingPagesUffd(h: HuskProcess): number {
  let inHusk: number;
  try {
    inHusk = Number(h.inj(h.pid, 'userfaultfd', [UFFD_MISSING_OPEN_FLAGS]));
  } catch (err) {
    throw new FerryError(ErrorCode.Unsupported, `process ${h.pid}: cannot make a userfaultfd for post-copy: ${(err as Error).message}`, { cause: err });
  }
  let fd = -1;
  const pidfd = pidfdOpen(h.pid);
  try {
    fd = pidfdGetfd(pidfd, inHusk);
  } finally {
    closeFd(pidfd);
    // Only the agent may hold it: a child the workload forks would otherwise keep the registration alive.
    h.inj(h.pid, 'close', [inHusk]);
  }
  try {
    uffdApi(fd, UFFD_MISSING_FEATURES);
  } catch (err) {
    closeFd(fd);
    throw new FerryError(ErrorCode.Unsupported, `process ${h.pid}: userfaultfd refuses post-copy's features: ${(err as Error).message}`, { cause: err });
  }
  return fd;
}

/** Registers `ranges` of the husk's memory for missing-page faults on its uffd. */
export function registerMissing(pid: number, fd: number, ranges: readonly Span[]): void {
  try {
    for (const s of ranges) uffdRegisterMissing(fd, s.start, s.end - s.start);
  } catch (err) {
    throw new FerryError(ErrorCode.Unsupported, `process ${pid}: cannot register its memory for post-copy: ${(err as Error).message}`, { cause: err });
  }
}
