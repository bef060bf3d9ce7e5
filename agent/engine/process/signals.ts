// Signals of a process: dispositions and pending signals, read at checkpoint (through injected
// calls in the stopped process) and put back into its husk at restore. Per-thread masks and
// pending signals go with the thread (threads.ts).
import { type ProcessImage, type SigActionImage, type ThreadImage, fromHex, toHex } from '../../../shared/image-format.ts';
import { SYS } from '../../ffi/libc.ts';
import { injectAt, peekSiginfo } from '../../ffi/ptrace.ts';
import { type HuskProcess, OFF_ARGS, errOf } from './husk-core.ts';
import { injectStep, injectStepOk, outArea, readOut } from './inject.ts';
import { type MapEntry, readStatus } from './procfs.ts';

// --- checkpoint --------------------------------------------------------------------------------

/**
 * Pending signals worth carrying: the SIGCHLD (CLD_STOPPED/CLD_CONTINUED) a parent gets because
 * the checkpoint itself stopped its child is an artifact of the freeze and is left out.
 */
export function pendingOf(tid: number, shared: boolean): ThreadImage['pending'] {
  return peekSiginfo(tid, shared)
    .filter((si) => !(si.readInt32LE(0) === 17 && [5, 6].includes(si.readInt32LE(8))))
    .map((si) => ({ sig: si.readInt32LE(0), siginfo: si.toString('base64') }));
}

/**
 * Every disposition that is not all zero: a default one keeps its flags, restorer and mask too
 * (glibc's sigaction sets SA_RESTORER even for SIG_DFL), so SigCgt/SigIgn are not enough.
 */
export function collectSigactions(pid: number, site: bigint, maps: readonly MapEntry[]): SigActionImage[] {
  const out = outArea(pid, maps);
  const acts: SigActionImage[] = [];
  for (let sig = 1; sig <= 64; sig++) {
    if (sig === 9 || sig === 19) continue;
    injectStepOk(pid, site, 'rt_sigaction', [sig, 0, out, 8]);
    const a = readOut(pid, out, 32);
    if (a.equals(ZERO_ACTION)) continue;
    acts.push({ sig, handler: toHex(a.readBigUInt64LE(0)), flags: toHex(a.readBigUInt64LE(8)), restorer: toHex(a.readBigUInt64LE(16)), mask: toHex(a.readBigUInt64LE(24)) });
  }
  return acts;
}
const ZERO_ACTION = Buffer.alloc(32);

// --- restore -----------------------------------------------------------------------------------

/** The kernel's struct sigaction for sig as the image has it; all zero (SIG_DFL) when it has none. */
function sigactionBytes(p: ProcessImage, sig: number): Buffer {
  const b = Buffer.alloc(32);
  const a = p.sigactions.find((x) => x.sig === sig);
  if (!a) return b;
  b.writeBigUInt64LE(fromHex(a.handler), 0);
  b.writeBigUInt64LE(fromHex(a.flags), 8);
  b.writeBigUInt64LE(fromHex(a.restorer), 16);
  b.writeBigUInt64LE(fromHex(a.mask), 24);
  return b;
}

/** The image's actions; a signal it has none for is default, whatever the husk started with. */
export function restoreSigactions(h: HuskProcess, p: ProcessImage): void {
  const pid = h.pid;
  const st = readStatus(pid);
  const husks = BigInt(`0x${st.get('SigCgt') ?? '0'}`) | BigInt(`0x${st.get('SigIgn') ?? '0'}`);
  for (let sig = 1; sig <= 64; sig++) {
    if (sig === 9 || sig === 19) continue;
    if (!p.sigactions.some((a) => a.sig === sig) && ((husks >> BigInt(sig - 1)) & 1n) === 0n) continue;
    h.inj(pid, 'rt_sigaction', [sig, h.put(OFF_ARGS, sigactionBytes(p, sig)), 0, 8]);
  }
}

/** Sets one signal's disposition to SIG_DFL (0) or SIG_IGN (1): the corrupt-flag test hook (verify/corrupt.ts). */
export function setDisposition(h: HuskProcess, sig: number, handler: 0n | 1n): void {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(handler, 0);
  h.inj(h.pid, 'rt_sigaction', [sig, h.put(OFF_ARGS, b), 0, 8]);
}

/**
 * Every injection into a husk ends on an int3 with all signals blocked, and the kernel resets
 * the handler of a blocked SIGTRAP it forces to SIG_DFL. So SIGTRAP's action goes in once more
 * after the last of them, through syscall stops (no trap).
 */
export function restoreTrapAction(h: HuskProcess, p: ProcessImage): void {
  if (!p.sigactions.some((a) => a.sig === 5)) return;
  const r = injectStep(h.pid, h.scratch, SYS.rt_sigaction, [5, h.put(OFF_ARGS, sigactionBytes(p, 5)), 0, 8]);
  const e = errOf('injected rt_sigaction(SIGTRAP)', r, { pid: h.pid });
  if (e) throw e;
}

/** Signals queued for the whole process go back into its queue (sent to itself, so any si_code is allowed). */
export function queueSharedSignals(h: HuskProcess, p: ProcessImage): void {
  for (const s of p.pendingShared) h.inj(h.pid, 'rt_sigqueueinfo', [p.pid, s.sig, h.put(OFF_ARGS, Buffer.from(s.siginfo, 'base64'))]);
}

/** The SIGCHLD of an exited child husk is pending in this husk (a traced task queues even ignored signals): take it back. */
export function dropSigchld(h: HuskProcess): void {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(1n << 16n, 0); // SIGCHLD (17)
  const set = h.put(OFF_ARGS, b);
  injectAt(h.pid, h.scratch, SYS.rt_sigtimedwait, [set, 0, set + 8n, 8]); // zero timeout: EAGAIN when none
}
