// Readers for /proc/PID: the parts of a process's state the kernel shows without touching the
// process. Pure parsing, no ptrace.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

export interface MapEntry {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: number;
  path: string;
}

export function parseMaps(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3]!, offset: BigInt(`0x${m[4]}`), dev: m[5]!, inode: Number(m[6]), path: m[7] ?? '' });
  }
  return out;
}
export const readMaps = (pid: number): MapEntry[] => parseMaps(readFileSync(`/proc/${pid}/maps`, 'utf8'));

/** /proc/PID/stat split after the comm field (which may hold spaces); index 0 is field 3 (state). */
export function readStat(pid: number): { comm: string; f: (n: number) => string } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const close = s.lastIndexOf(')');
  const comm = s.slice(s.indexOf('(') + 1, close);
  const rest = s.slice(close + 2).trim().split(' ');
  return { comm, f: (n: number) => rest[n - 3] ?? '0' };
}

export function readStatus(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

export const listTasks = (pid: number): number[] =>
  readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .filter((n) => n > 0)
    .sort((a, b) => a - b);

export const listFds = (pid: number): number[] =>
  readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .filter((n) => Number.isInteger(n))
    .sort((a, b) => a - b);

export const fdTarget = (pid: number, fd: number): string => readlinkSync(`/proc/${pid}/fd/${fd}`);

export function readFdinfo(pid: number, fd: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

/** Children of every thread of a process, from /proc/PID/task/TID/children. */
export function listChildren(pid: number): number[] {
  const out = new Set<number>();
  for (const tid of listTasks(pid)) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.add(Number(c));
    } catch {
      // the thread exited meanwhile
    }
  }
  return [...out].sort((a, b) => a - b);
}

export const readComm = (pid: number, tid = pid): string => readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').replace(/\n$/, '');

/** The process has exited: it is gone from /proc, or a zombie waiting for its parent to reap it. */
export function isGone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Whether pid is on its way out: a zombie or dead, exiting (PF_EXITING in /proc/PID/stat field 9,
 * set at the start of do_exit; a big address space takes a while to tear down), or with a SIGKILL
 * pending that it has not acted on yet.
 */
export function isDying(pid: number): boolean {
  if (isGone(pid)) return true;
  try {
    if ((Number(readStat(pid).f(9)) & 0x4) !== 0) return true;
    const pending = (k: string) => BigInt(`0x${readStatus(pid).get(k) ?? '0'}`);
    return ((pending('ShdPnd') | pending('SigPnd')) & 0x100n) !== 0n;
  } catch {
    return true;
  }
}

/** The wait status of a zombie (/proc/PID/stat field 52), or null when pid is not one (or gone). */
export function zombieStatus(pid: number): number | null {
  try {
    const st = readStat(pid);
    return st.f(3) === 'Z' ? Number(st.f(52)) : null;
  } catch {
    return null;
  }
}

/** Whether err came from reading /proc of a process that has exited meanwhile. */
export function vanished(err: unknown, pid: number): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return (code === 'ENOENT' || code === 'ESRCH') && isGone(pid);
}
