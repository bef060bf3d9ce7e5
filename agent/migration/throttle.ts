// Slowing a workload down while pre-copy chases its writes: a CPU quota on the tree, through
// cgroup v2's cpu.max where the workload's group has the cpu controller (never above the
// workload's own quota; its own cpu.max comes back afterwards), else through a cgroup v1 cpu
// group nested in the workload's own (so its own quota still holds; the tree moves in and back
// out, and the workload's group is never written). What was done is a plain record, so an agent
// that restarted can still undo it.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type ThrottleRecord =
  | { kind: 'v2'; dir: string; previous: string; cpus: number }
  | { kind: 'v1'; dir: string; back: string; mount: string; cpus: number };

const PERIOD_US = 100_000;

/** Where the cgroup v1 cpu controller is mounted, if it is. */
function v1CpuMount(): string | null {
  for (const l of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, dir, fstype, opts] = l.split(' ');
    if (fstype === 'cgroup' && dir && (opts ?? '').split(',').includes('cpu')) return dir;
  }
  return null;
}

/** The v1 cpu group a task is in ("/" when none). */
function v1CpuGroup(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]?.split(',').includes('cpu'));
  return line ? line.split(':').slice(2).join(':') : '/';
}

/**
 * The throttle to apply: `cpus` CPUs for the tree, through the workload's cgroup v2 directory
 * `v2dir` when it has the cpu controller, else a cgroup v1 cpu group of the migration's own.
 * With the record of an earlier throttle, the same place with a new quota. Null: no cpu
 * controller here. Persist it, then applyThrottle(): an agent that restarts can undo it.
 */
export function planThrottle(id: string, cpus: number, v2dir: string | null, rec: ThrottleRecord | null, rootPid: number): ThrottleRecord | null {
  if (rec) return { ...rec, cpus };
  if (v2dir && existsSync(path.join(v2dir, 'cpu.max'))) return { kind: 'v2', dir: v2dir, previous: readFileSync(path.join(v2dir, 'cpu.max'), 'utf8').trim(), cpus };
  const mount = v1CpuMount();
  if (!mount) return null;
  const own = v1CpuGroup(rootPid);
  return { kind: 'v1', dir: path.join(mount, own, `ferry-throttle-${id}`), back: own, mount, cpus };
}

/** Limits the tree (its pids now) as planned. */
export function applyThrottle(rec: ThrottleRecord, pids: readonly number[]): void {
  let quota = Math.max(1000, Math.round(rec.cpus * PERIOD_US));
  if (rec.kind === 'v2') {
    // The workload's own quota stays the ceiling: throttling only ever slows it further.
    const [ownQuota, ownPeriod] = (rec.previous || 'max').split(/\s+/);
    if (ownQuota !== 'max' && ownPeriod) quota = Math.min(quota, Math.round((Number(ownQuota) * PERIOD_US) / Number(ownPeriod)));
    writeFileSync(path.join(rec.dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
    return;
  }
  mkdirSync(rec.dir, { recursive: true });
  writeFileSync(path.join(rec.dir, 'cpu.cfs_period_us'), String(PERIOD_US));
  writeFileSync(path.join(rec.dir, 'cpu.cfs_quota_us'), String(quota));
  for (const pid of pids) {
    try {
      writeFileSync(path.join(rec.dir, 'cgroup.procs'), String(pid));
    } catch {
      // exited meanwhile
    }
  }
}

/** Full speed again. Never throws; safe to repeat. */
export function unthrottle(rec: ThrottleRecord | null | undefined): void {
  if (!rec) return;
  try {
    if (rec.kind === 'v2') {
      writeFileSync(path.join(rec.dir, 'cpu.max'), rec.previous || 'max');
      return;
    }
    if (!existsSync(rec.dir)) return;
    const target = path.join(rec.mount, rec.back, 'cgroup.procs');
    // Children forked meanwhile are in the group too: everything goes back.
    for (let i = 0; i < 3; i++) {
      const left = readFileSync(path.join(rec.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
      if (left.length === 0) break;
      for (const pid of left) {
        try {
          writeFileSync(target, pid);
        } catch {
          // exited meanwhile
        }
      }
    }
    rmdirSync(rec.dir);
  } catch {
    // the group or the workload is gone already
  }
}

/**
 * How many CPUs to allow: the CPU the tree used (`usedCpus`) scaled so it dirties memory at a
 * quarter of what the link carries; halved again on every further throttled round. At least
 * 0.02, at most 4.
 */
export function throttleCpus(dirtyRateBps: number, bandwidthBps: number, usedCpus: number, previous: number | null): number {
  if (previous !== null) return Math.max(0.02, previous / 2);
  const used = usedCpus > 0 ? usedCpus : 1;
  if (!(dirtyRateBps > 0) || !(bandwidthBps > 0)) return Math.max(0.02, used / 2);
  return Math.min(4, Math.max(0.02, used * Math.min(0.5, (0.25 * bandwidthBps) / dirtyRateBps)));
}
