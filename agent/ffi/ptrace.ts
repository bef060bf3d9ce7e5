// ptrace as the engine needs it: seize/interrupt/wait, registers and regsets, word access and
// syscall injection. Publishes stops on diagnostics_channel `ferry:ptrace` instead of logging.
import diagnostics_channel from 'node:diagnostics_channel';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { SYS, addressOf, asLong, getErrno, libc, setErrno } from './libc.ts';
import { SyscallError, WALL, WNOHANG, check, waitpid } from './syscalls.ts';

const chan = diagnostics_channel.channel('ferry:ptrace');

export const PT = {
  PEEKDATA: 2,
  POKEDATA: 5,
  CONT: 7,
  KILL: 8,
  SINGLESTEP: 9,
  GETREGS: 12,
  SETREGS: 13,
  DETACH: 17,
  SYSCALL: 24,
  GETEVENTMSG: 0x4201,
  GETSIGINFO: 0x4202,
  GETREGSET: 0x4204,
  SETREGSET: 0x4205,
  SEIZE: 0x4206,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
  PEEKSIGINFO: 0x4209,
  GETSIGMASK: 0x420a,
  SETSIGMASK: 0x420b,
  GET_RSEQ_CONFIGURATION: 0x420f,
} as const;

export const PTO = { TRACESYSGOOD: 1, TRACEFORK: 2, TRACEVFORK: 4, TRACECLONE: 8, EXITKILL: 0x100000 } as const;
export const PTEV = { FORK: 1, VFORK: 2, CLONE: 3, EXEC: 4, EXIT: 6, STOP: 128 } as const;
export const NT_PRSTATUS = 1;
export const NT_X86_XSTATE = 0x202;

function pt(req: number, pid: number, addr: unknown, data: unknown, what: string): number {
  return check(`ptrace(${what})`, () => libc.ptrace(req, pid, addr, data), { pid });
}

export const seize = (pid: number, options: number): void => void pt(PT.SEIZE, pid, 0, options, 'SEIZE');
export const interrupt = (pid: number): void => void pt(PT.INTERRUPT, pid, 0, 0, 'INTERRUPT');
export const cont = (pid: number, sig = 0): void => void pt(PT.CONT, pid, 0, sig, 'CONT');
export const syscallStep = (pid: number, sig = 0): void => void pt(PT.SYSCALL, pid, 0, sig, 'SYSCALL');
export const singlestep = (pid: number): void => void pt(PT.SINGLESTEP, pid, 0, 0, 'SINGLESTEP');
export const detach = (pid: number, sig = 0): void => void pt(PT.DETACH, pid, 0, sig, 'DETACH');
export const listen = (pid: number): void => void pt(PT.LISTEN, pid, 0, 0, 'LISTEN');

export function eventMsg(pid: number): number {
  const b = Buffer.alloc(8);
  pt(PT.GETEVENTMSG, pid, 0, b, 'GETEVENTMSG');
  return Number(b.readBigUInt64LE(0));
}

export interface Stop {
  pid: number;
  status: number;
  exited: boolean;
  signaled: boolean;
  /** Signal that stopped the task (WSTOPSIG), 0 when it exited. */
  sig: number;
  /** PTRACE_EVENT_* in bits 16..23 of the status. */
  event: number;
}

const decode = (pid: number, status: number): Stop => {
  const exited = (status & 0x7f) === 0;
  const stopped = (status & 0xff) === 0x7f;
  return { pid, status, exited, signaled: !exited && !stopped, sig: stopped ? (status >> 8) & 0xff : 0, event: stopped ? (status >> 16) & 0xff : 0 };
};

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const nap = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

/**
 * Waits for the next stop of one task. Polls with WNOHANG so a task that never stops turns into a
 * Timeout rather than a hung agent; the first polls are tight because stops usually take <1 ms.
 */
export function waitStop(pid: number, timeoutMs = 5000): Stop {
  const deadline = performance.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const [r, status] = waitpid(pid, WALL | WNOHANG);
    if (r === pid) {
      const s = decode(pid, status);
      if (chan.hasSubscribers) chan.publish({ kind: 'stop', ...s });
      return s;
    }
    if (performance.now() > deadline) throw new FerryError(ErrorCode.Timeout, `task ${pid} did not stop within ${timeoutMs} ms`, { details: { pid } });
    if (i > 200) nap(i > 2000 ? 1 : 0.05);
  }
}

/** Waits for a stop and insists it is what the caller expects; anything else is a FerryError naming it. */
export function expectStop(pid: number, want: { sig?: number; event?: number }, timeoutMs?: number): Stop {
  const s = waitStop(pid, timeoutMs);
  if (s.exited || s.signaled) throw new FerryError(ErrorCode.Internal, `task ${pid} died while traced (status 0x${s.status.toString(16)})`, { details: { pid, status: s.status } });
  if ((want.sig !== undefined && s.sig !== want.sig) || (want.event !== undefined && s.event !== want.event))
    throw new FerryError(ErrorCode.Internal, `task ${pid}: unexpected stop sig ${s.sig} event ${s.event}`, { details: { pid, ...want, got: s } });
  return s;
}

// user_regs_struct: 27 u64 in kernel order.
export const REG = {
  r15: 0, r14: 1, r13: 2, r12: 3, rbp: 4, rbx: 5, r11: 6, r10: 7, r9: 8, r8: 9, rax: 10, rcx: 11, rdx: 12, rsi: 13, rdi: 14,
  orig_rax: 15, rip: 16, cs: 17, eflags: 18, rsp: 19, ss: 20, fs_base: 21, gs_base: 22, ds: 23, es: 24, fs: 25, gs: 26,
} as const;
export type RegName = keyof typeof REG;
export const REGS_SIZE = 27 * 8;

/** Registers as a 216-byte buffer with typed accessors; the buffer is what goes to the image. */
export class Regs {
  constructor(readonly buf: Buffer = Buffer.alloc(REGS_SIZE)) {}
  get(r: RegName): bigint {
    return this.buf.readBigUInt64LE(REG[r] * 8);
  }
  getSigned(r: RegName): bigint {
    return this.buf.readBigInt64LE(REG[r] * 8);
  }
  set(r: RegName, v: bigint | number): void {
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), REG[r] * 8);
  }
  clone(): Regs {
    return new Regs(Buffer.from(this.buf));
  }
}

export function getRegs(pid: number): Regs {
  const r = new Regs();
  pt(PT.GETREGS, pid, 0, r.buf, 'GETREGS');
  return r;
}
export const setRegs = (pid: number, r: Regs): void => void pt(PT.SETREGS, pid, 0, r.buf, 'SETREGS');

/** GETREGSET; returns exactly the bytes the kernel filled (SETREGSET wants that length back). */
export function getRegset(pid: number, nt: number, max = 16384): Buffer {
  const data = Buffer.alloc(max);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(max), 8);
  pt(PT.GETREGSET, pid, nt, iov, 'GETREGSET');
  const len = Number(iov.readBigUInt64LE(8));
  return Buffer.from(data.subarray(0, len));
}

export function setRegset(pid: number, nt: number, data: Buffer): void {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  pt(PT.SETREGSET, pid, nt, iov, 'SETREGSET');
}

export function getSigmask(pid: number): bigint {
  const b = Buffer.alloc(8);
  pt(PT.GETSIGMASK, pid, 8, b, 'GETSIGMASK');
  return b.readBigUInt64LE(0);
}
export function setSigmask(pid: number, mask: bigint): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(mask, 0);
  pt(PT.SETSIGMASK, pid, 8, b, 'SETSIGMASK');
}

/** Queued signals without dequeuing them: per thread, or the process-wide queue with shared=true. 128-byte siginfos. */
export function peekSiginfo(tid: number, shared: boolean): Buffer[] {
  const out: Buffer[] = [];
  const arg = Buffer.alloc(16);
  const batch = 32;
  const buf = Buffer.alloc(128 * batch);
  for (;;) {
    arg.writeBigUInt64LE(BigInt(out.length), 0);
    arg.writeUInt32LE(shared ? 1 : 0, 8);
    arg.writeInt32LE(batch, 12);
    const n = pt(PT.PEEKSIGINFO, tid, arg, buf, 'PEEKSIGINFO');
    for (let i = 0; i < n; i++) out.push(Buffer.from(buf.subarray(i * 128, (i + 1) * 128)));
    if (n < batch) return out;
  }
}

export interface RseqConfig {
  ptr: bigint;
  size: number;
  sig: number;
  flags: number;
}
export function getRseq(pid: number): RseqConfig {
  const b = Buffer.alloc(24);
  pt(PT.GET_RSEQ_CONFIGURATION, pid, 24, b, 'GET_RSEQ_CONFIGURATION');
  return { ptr: b.readBigUInt64LE(0), size: b.readUInt32LE(8), sig: b.readUInt32LE(12), flags: b.readUInt32LE(16) };
}

/** PEEKDATA: -1 is a legal word, so errno decides. */
export function peek(pid: number, addr: bigint): bigint {
  setErrno(0);
  const v = asLong(libc.ptrace(PT.PEEKDATA, pid, addr, 0));
  const e = getErrno();
  if (v === -1n && e !== 0) throw new SyscallError('ptrace(PEEKDATA)', e, { pid });
  return v;
}
export const poke = (pid: number, addr: bigint, word: bigint): void => void pt(PT.POKEDATA, pid, addr, BigInt.asUintN(64, word), 'POKEDATA');

/**
 * Runs one syscall inside a stopped tracee at `site` (an address holding `syscall; int3`), and
 * returns the raw result (negative errno on failure). The caller's registers are restored
 * afterwards. orig_rax = -1 stops the kernel from applying restart logic to the injected call.
 */
export function injectAt(pid: number, site: bigint, nr: number, args: ReadonlyArray<bigint | number> = []): bigint {
  return withSignalsBlocked(pid, () => injectUnmasked(pid, site, nr, args));
}

/**
 * Runs fn with every signal of the task blocked, then puts its mask back: pending signals stay
 * pending, since a signal-delivery stop in the middle would run handlers on injected state.
 */
export function withSignalsBlocked<T>(tid: number, fn: () => T): T {
  const mask = getSigmask(tid);
  setSigmask(tid, (1n << 64n) - 1n);
  try {
    return fn();
  } finally {
    setSigmask(tid, mask);
  }
}

/** The task's registers set up to make syscall nr with args at site; returns the originals to put back. */
export function loadSyscall(tid: number, site: bigint, nr: number, args: ReadonlyArray<bigint | number>): Regs {
  const saved = getRegs(tid);
  const r = saved.clone();
  r.set('rip', site);
  r.set('rax', nr);
  r.set('orig_rax', -1);
  const argRegs: RegName[] = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'];
  argRegs.forEach((name, i) => r.set(name, BigInt(args[i] ?? 0)));
  setRegs(tid, r);
  return saved;
}

function injectUnmasked(pid: number, site: bigint, nr: number, args: ReadonlyArray<bigint | number>): bigint {
  const saved = loadSyscall(pid, site, nr, args);
  try {
    cont(pid);
    for (;;) {
      const s = waitStop(pid);
      if (s.exited || s.signaled) throw new FerryError(ErrorCode.Internal, `task ${pid} died during injected syscall ${nr}`, { details: { pid, nr, status: s.status } });
      if (s.sig === 5 && s.event === 0) break;
      // Fork/clone events from an injected clone3 arrive before the int3; the caller reads them via onEvent.
      if (s.event !== 0) {
        pendingEvents.push({ pid, event: s.event, msg: eventMsg(pid) });
        cont(pid);
        continue;
      }
      throw new FerryError(ErrorCode.Internal, `task ${pid}: signal ${s.sig} during injected syscall ${nr}`, { details: { pid, nr, sig: s.sig } });
    }
    const out = getRegs(pid).getSigned('rax');
    if (chan.hasSubscribers) chan.publish({ kind: 'inject', pid, nr, result: out });
    return out;
  } finally {
    setRegs(pid, saved);
  }
}

export interface TraceEvent {
  pid: number;
  event: number;
  msg: number;
}
const pendingEvents: TraceEvent[] = [];
/** Events (PTRACE_EVENT_CLONE/FORK) seen during the last injections, oldest first; clears them. */
export const takeEvents = (): TraceEvent[] => pendingEvents.splice(0, pendingEvents.length);

/** Injects and throws on a negative result; returns the result as bigint. */
export function injectOk(pid: number, site: bigint, name: keyof typeof SYS, args: ReadonlyArray<bigint | number> = []): bigint {
  const r = injectAt(pid, site, SYS[name], args);
  if (r < 0n && r > -4096n) throw new SyscallError(`injected ${name}`, Number(-r), { pid });
  return r;
}

/**
 * Runs code placed in a stopped tracee at `entry` (ending in int3) with rdi and rsi set, every
 * signal blocked; returns rax and r13 at the int3. The task's registers are put back after.
 */
export function runCode(pid: number, entry: bigint, rdi: bigint, rsi: bigint): { rax: bigint; r13: bigint } {
  return withSignalsBlocked(pid, () => {
    const saved = getRegs(pid);
    const r = saved.clone();
    r.set('rip', entry);
    r.set('rdi', rdi);
    r.set('rsi', rsi);
    r.set('orig_rax', -1);
    setRegs(pid, r);
    try {
      cont(pid);
      const s = waitStop(pid);
      if (s.exited || s.signaled) throw new FerryError(ErrorCode.Internal, `task ${pid} died running injected code`, { details: { pid, status: s.status } });
      if (s.sig !== 5) throw new FerryError(ErrorCode.Internal, `task ${pid}: signal ${s.sig} while running injected code`, { details: { pid, sig: s.sig } });
      const out = getRegs(pid);
      return { rax: out.getSigned('rax'), r13: out.get('r13') };
    } finally {
      setRegs(pid, saved);
    }
  });
}
