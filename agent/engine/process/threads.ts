// Threads of a process: registers and per-thread kernel state (mask, pending signals, rseq,
// robust list, tid address, name, alternate stack), read at checkpoint and given back at
// restore, where every non-leader thread is cloned into the husk with its saved TID and the
// leader gets its registers at the exit stop of its last syscall.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type ProcessImage, type ThreadImage, fromHex, toHex } from '../../../shared/image-format.ts';
import { SYS } from '../../ffi/libc.ts';
import {
  NT_X86_XSTATE,
  PTEV,
  Regs,
  expectStop,
  getRegs,
  getRegset,
  getRseq,
  getSigmask,
  injectAt,
  setRegs,
  setRegset,
  setSigmask,
  syscallStep,
  takeEvents,
} from '../../ffi/ptrace.ts';
import { sys } from '../../ffi/syscalls.ts';
import { type HuskProcess, OFF_ARGS, OFF_SETTID, SCRATCH_SIZE, errOf } from './husk-core.ts';
import { injectStepOk, outArea, readOut } from './inject.ts';
import { type MapEntry, readComm } from './procfs.ts';
import { pendingOf } from './signals.ts';
import { collectSched, restoreSched } from './scheduling.ts';

export const CLONE_THREAD_FLAGS = 0x50f00n; // VM|FS|FILES|SIGHAND|THREAD|SYSVSEM

// --- checkpoint --------------------------------------------------------------------------------

const PR_GET_TID_ADDRESS = 40;

export function collectThread(pid: number, tid: number, site: bigint, maps: readonly MapEntry[]): ThreadImage {
  const regs = getRegs(tid);
  const xstate = getRegset(tid, NT_X86_XSTATE);
  const sigmask = getSigmask(tid);
  let rseq: ThreadImage['rseq'] = null;
  try {
    const r = getRseq(tid);
    if (r.ptr !== 0n) rseq = { ptr: toHex(r.ptr), size: r.size, sig: r.sig, flags: r.flags };
  } catch {
    // kernel without rseq configuration reporting: the thread is restored unregistered
  }
  const head = Buffer.alloc(8);
  const len = Buffer.alloc(8);
  sys('get_robust_list', tid, head, len);
  const out = outArea(tid, maps);
  injectStepOk(tid, site, 'prctl', [PR_GET_TID_ADDRESS, out]);
  const tidAddress = readOut(pid, out, 8).readBigUInt64LE(0);
  injectStepOk(tid, site, 'sigaltstack', [0, out]);
  const ss = readOut(pid, out, 24);
  return {
    tid,
    pending: pendingOf(tid, false),
    comm: readComm(pid, tid),
    regs: regs.buf.toString('base64'),
    xstate: xstate.toString('base64'),
    sigmask: toHex(sigmask),
    rseq,
    robustList: { head: toHex(head.readBigUInt64LE(0)), len: Number(len.readBigUInt64LE(0)) },
    tidAddress: toHex(tidAddress),
    altstack: { sp: toHex(ss.readBigUInt64LE(0)), flags: ss.readInt32LE(8), size: toHex(ss.readBigUInt64LE(16)) },
    sched: collectSched(pid, tid),
  };
}

// --- restore -----------------------------------------------------------------------------------

/** Registers as the thread must resume: interrupted syscalls restart the way the kernel would have restarted them. */
export function resumeRegs(saved: Regs): Regs {
  const r = saved.clone();
  const rax = r.getSigned('rax');
  if (rax === -512n || rax === -513n || rax === -514n) {
    r.set('rip', r.get('rip') - 2n);
    r.set('rax', r.get('orig_rax'));
  } else if (rax === -516n) {
    r.set('rax', -4n); // ERESTART_RESTARTBLOCK: its restart block is gone, EINTR is what callers handle
  }
  r.set('orig_rax', -1n);
  return r;
}

/** Creates every non-leader thread with its saved TID (injected clone3 with thread flags). */
export function createThreads(h: HuskProcess, p: ProcessImage): void {
  for (const t of p.threads) {
    if (t.tid === p.pid) continue;
    const settid = Buffer.alloc(4);
    settid.writeInt32LE(t.tid, 0);
    h.put(OFF_SETTID, settid);
    const args = Buffer.alloc(88);
    args.writeBigUInt64LE(CLONE_THREAD_FLAGS, 0);
    args.writeBigUInt64LE(h.scratch + OFF_SETTID, 64);
    args.writeBigUInt64LE(1n, 72);
    takeEvents();
    const r = injectAt(h.pid, h.scratch, SYS.clone3, [h.put(OFF_ARGS, args), 88]);
    if (r === -17n) throw new FerryError(ErrorCode.Conflict, `tid ${t.tid} is in use: cannot restore thread`, { details: { pid: h.pid, tid: t.tid } });
    const e = errOf('injected clone3(thread)', r, { pid: h.pid, tid: t.tid });
    if (e) throw e;
    const hostTid = takeEvents().find((ev) => ev.event === PTEV.CLONE)?.msg ?? t.tid;
    h.setHost(t.tid, hostTid);
    h.tids.push(hostTid);
    expectStop(hostTid, { event: PTEV.STOP });
  }
}

/** Per-thread kernel state that lives outside registers and memory. */
export function restoreThreadState(h: HuskProcess, t: ThreadImage, p: ProcessImage): void {
  const tid = h.host(t.tid);
  // Sent by the thread to itself, with the ids it sees.
  for (const s of t.pending) h.inj(tid, 'rt_tgsigqueueinfo', [p.pid, t.tid, s.sig, h.put(OFF_ARGS, Buffer.from(s.siginfo, 'base64'))]);
  h.inj(tid, 'set_tid_address', [fromHex(t.tidAddress)]);
  if (t.robustList.head !== '0x0') h.inj(tid, 'set_robust_list', [fromHex(t.robustList.head), t.robustList.len]);
  if (t.rseq) h.inj(tid, 'rseq', [fromHex(t.rseq.ptr), t.rseq.size, 0, t.rseq.sig]);
  h.inj(tid, 'prctl', [15, h.putStr(t.comm.slice(0, 15))]); // PR_SET_NAME
  if ((t.altstack.flags & 2) === 0) {
    const ss = Buffer.alloc(24);
    ss.writeBigUInt64LE(fromHex(t.altstack.sp), 0);
    ss.writeInt32LE(t.altstack.flags & ~1, 8); // SS_ONSTACK is state, not a setting
    ss.writeBigUInt64LE(fromHex(t.altstack.size), 16);
    h.inj(tid, 'sigaltstack', [h.put(OFF_ARGS, ss), 0]);
  }
  setSigmask(tid, fromHex(t.sigmask));
  restoreSched(tid, t.sched);
}

/** Hands a non-leader thread its saved registers; it stays stopped until release(). */
export function setThreadRegs(h: HuskProcess, t: ThreadImage): void {
  const tid = h.host(t.tid);
  setRegs(tid, resumeRegs(new Regs(Buffer.from(t.regs, 'base64'))));
  setRegset(tid, NT_X86_XSTATE, Buffer.from(t.xstate, 'base64'));
}

/**
 * The leader unmaps the scratch page with its own last syscall; its saved registers go in at
 * that syscall's exit stop, so no instruction ever runs from the vanished page.
 */
export function finishLeader(h: HuskProcess, t: ThreadImage): void {
  const pid = h.pid;
  h.setHost(t.tid, pid);
  const r = getRegs(pid).clone();
  r.set('rip', h.scratch);
  r.set('rax', SYS.munmap);
  r.set('orig_rax', -1n);
  r.set('rdi', h.scratch);
  r.set('rsi', SCRATCH_SIZE);
  setRegs(pid, r);
  // Restored pending signals must wait for the real mask, not stop this last step.
  setSigmask(pid, (1n << 64n) - 1n);
  syscallStep(pid);
  expectStop(pid, { sig: 0x85 });
  syscallStep(pid);
  expectStop(pid, { sig: 0x85 });
  setSigmask(pid, fromHex(t.sigmask));
  const res = getRegs(pid).getSigned('rax');
  if (res !== 0n) throw errOf('munmap(scratch)', res, { pid }) ?? new FerryError(ErrorCode.Internal, 'munmap(scratch) failed');
  setThreadRegs(h, t);
}
