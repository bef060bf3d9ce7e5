// Reads a restored (stopped or frozen) process from /proc into a ProcessReading.
import { readFileSync, readlinkSync } from 'node:fs';
import { listFds, listTasks, readMaps } from '../process/procfs.ts';
import { schedOf } from '../process/scheduling.ts';
import { type FdReading, type ProcessReading, keyValues } from './reading.ts';

const text = (path: string): string => readFileSync(path, 'utf8');

export function readProcess(hostPid: number, opts: { fds?: boolean } = {}): ProcessReading {
  const fds = new Map<number, FdReading>();
  if (opts.fds !== false) for (const fd of listFds(hostPid)) fds.set(fd, { target: readlinkSync(`/proc/${hostPid}/fd/${fd}`), fdinfo: text(`/proc/${hostPid}/fdinfo/${fd}`) });
  return {
    hostPid,
    status: keyValues(text(`/proc/${hostPid}/status`)),
    tasks: listTasks(hostPid).map((tid) => ({
      hostTid: tid,
      status: keyValues(text(`/proc/${hostPid}/task/${tid}/status`)),
      comm: text(`/proc/${hostPid}/task/${tid}/comm`).replace(/\n$/, ''),
      sched: schedOf(tid),
    })),
    personality: text(`/proc/${hostPid}/personality`).trim(),
    limits: text(`/proc/${hostPid}/limits`),
    cwd: readlinkSync(`/proc/${hostPid}/cwd`),
    root: readlinkSync(`/proc/${hostPid}/root`),
    exe: readlinkSync(`/proc/${hostPid}/exe`),
    maps: readMaps(hostPid),
    fds,
  };
}
