// Running syscalls inside a stopped task. At checkpoint time nothing in the workload is patched:
// a `syscall` instruction already present in its [vdso] is run between syscall stops. In a husk, a scratch
// page holds `syscall; int3`.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { SYS } from '../../ffi/libc.ts';
import { getRegs, loadSyscall, setRegs, syscallStep, waitStop, withSignalsBlocked } from '../../ffi/ptrace.ts';
import { SyscallError, vmRead } from '../../ffi/syscalls.ts';
import type { MapEntry } from './procfs.ts';

/** Address of a `0f 05` (syscall) byte pair inside the task's [vdso]. */
export function findSyscallSite(pid: number, maps: readonly MapEntry[]): bigint {
  const vdso = maps.find((m) => m.path === '[vdso]');
  if (!vdso) throw new FerryError(ErrorCode.Unsupported, `pid ${pid} has no [vdso] to inject through`, { details: { pid } });
  const buf = Buffer.alloc(Number(vdso.end - vdso.start));
  vmRead(pid, vdso.start, buf);
  for (let i = 0; i + 1 < buf.length; i++) if (buf[i] === 0x0f && buf[i + 1] === 0x05) return vdso.start + BigInt(i);
  throw new FerryError(ErrorCode.Unsupported, `pid ${pid}: no syscall instruction in [vdso]`, { details: { pid } });
}

/**
 * One syscall by single-stepping the site; registers are restored afterwards. Returns the raw
 * result. Every signal is blocked meanwhile so a pending one (a timer firing during the
 * checkpoint) stays pending for the workload instead of being delivered into injected code.
 */
export function injectStep(tid: number, site: bigint, nr: number, args: ReadonlyArray<bigint | number> = []): bigint {
  return withSignalsBlocked(tid, () => injectStepUnmasked(tid, site, nr, args));
}

/**
 * The call runs between a syscall-entry and a syscall-exit stop rather than up to a trap: if the
 * agent dies while the task sits at the exit stop, the kernel has no SIGTRAP to deliver (with
 * TRACESYSGOOD the stop code is not a signal) and the task drops back into its group-stop with
 * the registers already restored, so an abandoned checkpoint cannot kill the workload.
 */
function injectStepUnmasked(tid: number, site: bigint, nr: number, args: ReadonlyArray<bigint | number>): bigint {
  const saved = loadSyscall(tid, site, nr, args);
  try {
    for (const phase of ['entry', 'exit']) {
      syscallStep(tid);
      const s = waitStop(tid);
      if (s.exited || s.signaled) throw new FerryError(ErrorCode.Internal, `task ${tid} died during injected syscall ${nr}`, { details: { tid, nr } });
      if (s.sig !== 0x85) throw new FerryError(ErrorCode.Internal, `task ${tid}: stop ${s.sig}/${s.event} at syscall ${phase} of injected ${nr}`, { details: { tid, nr, sig: s.sig } });
    }
    return getRegs(tid).getSigned('rax');
  } finally {
    setRegs(tid, saved);
  }
}

export function injectStepOk(tid: number, site: bigint, name: keyof typeof SYS, args: ReadonlyArray<bigint | number> = []): bigint {
  const r = injectStep(tid, site, SYS[name], args);
  if (r < 0n && r > -4096n) throw new SyscallError(`injected ${name}`, Number(-r), { tid });
  return r;
}

/** A spot below the red zone of a stopped thread where an injected call may write its result. */
export function outArea(tid: number, maps: readonly MapEntry[]): bigint {
  const rsp = getRegs(tid).get('rsp');
  for (const back of [1024n, 256n]) {
    const a = (rsp - back) & ~15n;
    if (maps.some((m) => m.start <= a && a + 64n <= m.end && m.perms[1] === 'w')) return a;
  }
  return (rsp - 256n) & ~15n;
}

/** `len` bytes the injected call wrote at `addr`. */
export function readOut(pid: number, addr: bigint, len: number): Buffer {
  const b = Buffer.alloc(len);
  vmRead(pid, addr, b);
  return b;
}
