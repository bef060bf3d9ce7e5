// What verification reads of a restored process: plain data, so comparators can be tested on
// fake /proc readings. read.ts fills it from /proc.
import type { MapEntry } from '../process/procfs.ts';

export interface TaskReading {
  /** Host tid (the /proc/PID/task entry). */
  hostTid: number;
  /** /proc/PID/task/TID/status as key -> value. */
  status: Map<string, string>;
  comm: string;
  /** From /proc/PID/task/TID/stat: nice, policy, real-time priority. */
  sched?: { nice: number; policy: number; rtPriority: number };
}

export interface FdReading {
  /** readlink of /proc/PID/fd/N. */
  target: string;
  /** /proc/PID/fdinfo/N as text (epoll and other kinds have repeated keys). */
  fdinfo: string;
}

export interface ProcessReading {
  hostPid: number;
  status: Map<string, string>;
  tasks: TaskReading[];
  /** /proc/PID/personality (hex text). */
  personality: string;
  /** /proc/PID/limits text. */
  limits: string;
  cwd: string;
  root: string;
  exe: string;
  maps: MapEntry[];
  fds: Map<number, FdReading>;
}

/** Parses "key:\tvalue" lines (fdinfo, status) into a map; repeated keys keep the first. */
export function keyValues(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !m.has(line.slice(0, i))) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}
