// Timers of a process: interval timers (setitimer) and POSIX timers, read at checkpoint through
// injected calls and armed again in the husk at restore with the time they had left. timerfds
// are descriptors (files/anon-fds.ts).
import { readFileSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type ProcessImage, fromHex, toHex } from '../../../shared/image-format.ts';
import { vmRead } from '../../ffi/syscalls.ts';
import { type HuskProcess, OFF_ARGS } from './husk-core.ts';
import { injectStepOk, outArea, readOut } from './inject.ts';
import type { MapEntry } from './procfs.ts';

// --- checkpoint --------------------------------------------------------------------------------

export function collectItimers(pid: number, site: bigint, maps: readonly MapEntry[]): ProcessImage['itimers'] {
  const out = outArea(pid, maps);
  const res: ProcessImage['itimers'] = [];
  for (let which = 0; which < 3; which++) {
    injectStepOk(pid, site, 'getitimer', [which, out]);
    const b = readOut(pid, out, 32);
    const v = [0, 8, 16, 24].map((o) => Number(b.readBigInt64LE(o)));
    if (v.some((x) => x !== 0)) res.push({ which, interval: [v[0]!, v[1]!], value: [v[2]!, v[3]!] });
  }
  return res;
}

/** /proc/PID/timers gives ids, signals and targets; timer_gettime (injected) the times. */
export function collectPosixTimers(pid: number, site: bigint, maps: readonly MapEntry[]): ProcessImage['posixTimers'] {
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/timers`, 'utf8');
  } catch {
    return [];
  }
  const out = outArea(pid, maps);
  return text
    .split(/\n(?=ID:)/)
    .filter((b) => b.startsWith('ID:'))
    .map((b) => {
      const id = Number(/ID: (\d+)/.exec(b)?.[1]);
      const sig = /signal: (\d+)\/([0-9a-f]+)/.exec(b);
      const notify = /notify: (\w+)\/(?:pid|tid)\.(\d+)/.exec(b);
      const kind = /notify: none/.test(b) ? 1 : notify?.[1] === 'thread' ? 4 : 0;
      injectStepOk(pid, site, 'timer_gettime', [id, out]);
      const its = readOut(pid, out, 32);
      const v = [0, 8, 16, 24].map((o) => Number(its.readBigInt64LE(o)));
      return {
        id,
        clockid: Number(/ClockID: (-?\d+)/.exec(b)?.[1] ?? 1),
        signal: Number(sig?.[1] ?? 14),
        notify: kind,
        tid: Number(notify?.[2] ?? 0),
        value: toHex(BigInt(`0x${sig?.[2] ?? '0'}`)),
        interval: [v[0]!, v[1]!] as [number, number],
        remaining: [v[2]!, v[3]!] as [number, number],
      };
    });
}

// --- restore -----------------------------------------------------------------------------------

/** Interval timers, each with the time it had left. */
export function restoreItimers(h: HuskProcess, p: ProcessImage): void {
  for (const t of p.itimers) {
    const b = Buffer.alloc(32);
    [...t.interval, ...t.value].forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
    // A zero value would disarm it; the remaining time was real, so it fires as soon as possible.
    if (t.value[0] === 0 && t.value[1] === 0) b.writeBigInt64LE(1n, 24);
    h.inj(h.pid, 'setitimer', [t.which, h.put(OFF_ARGS, b), 0]);
  }
}

/**
 * POSIX timers come back under their old ids (PR_TIMER_CREATE_RESTORE_IDS makes timer_create
 * take the id it is given); after the threads exist, so thread-directed ones find their target.
 */
export function restoreTimers(h: HuskProcess, p: ProcessImage): void {
  if (p.posixTimers.length === 0) return;
  const pid = h.pid;
  h.inj(pid, 'prctl', [77, 1, 0, 0, 0]);
  try {
    for (const t of p.posixTimers) {
      const sev = Buffer.alloc(64);
      sev.writeBigUInt64LE(fromHex(t.value), 0);
      sev.writeInt32LE(t.signal, 8);
      sev.writeInt32LE(t.notify, 12);
      sev.writeInt32LE(t.tid, 16);
      const sevAddr = h.put(OFF_ARGS, sev);
      const idBuf = Buffer.alloc(4);
      idBuf.writeInt32LE(t.id, 0);
      const idAddr = h.put(OFF_ARGS + 0x80n, idBuf);
      h.inj(pid, 'timer_create', [t.clockid, sevAddr, idAddr]);
      vmRead(pid, idAddr, idBuf);
      if (idBuf.readInt32LE(0) !== t.id) throw new FerryError(ErrorCode.Internal, `timer ${t.id} of pid ${pid} came back as ${idBuf.readInt32LE(0)}`);
      const idle = (v: [number, number]) => v[0] === 0 && v[1] === 0;
      if (idle(t.remaining) && idle(t.interval)) continue;
      const its = Buffer.alloc(32);
      const value = idle(t.remaining) ? [0, 1] : t.remaining;
      [t.interval[0], t.interval[1], value[0]!, value[1]!].forEach((x, i) => its.writeBigInt64LE(BigInt(x), i * 8));
      h.inj(pid, 'timer_settime', [t.id, 0, h.put(OFF_ARGS, its), 0]);
    }
  } finally {
    h.inj(pid, 'prctl', [77, 0, 0, 0, 0]);
  }
}
