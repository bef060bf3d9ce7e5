// Self-checking workloads (test/workloads) run as ferry containers on lab hosts, and the checks
// a user would make after a migration: where ferry says it runs, that exactly one copy of it
// runs on the machine, and that its own checks pass while it makes progress.
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import type { MigrationView } from '../../../shared/migration.ts';
import type { WorkloadInfo } from '../../../shared/workload.ts';
import { WORKLOAD_SPECS, buildWorkload, sleep, type WorkloadName, type WorkloadStatus } from '../../workloads/harness.ts';
import { ferry, ferryJson } from './cli.ts';

export interface LabWorkload {
  /** ferry's name of it. */
  name: string;
  kind: WorkloadName;
  statusPath: string;
  dir: string;
}

/** `runFlags`: more `ferry run` options (limits, requests, placement). */
export async function runOnLab(env: NodeJS.ProcessEnv, host: string, kind: WorkloadName, name: string, args: string[] = [], runFlags: string[] = []): Promise<LabWorkload> {
  const prog = await buildWorkload(kind);
  const dir = mkdtempSync(path.join(tmpdir(), `ferry-lab-wl-${name}-`));
  const statusPath = path.join(dir, 'status.json');
  const argv = WORKLOAD_SPECS[kind].kind === 'python' ? ['/usr/bin/python3', prog, statusPath, ...args] : [prog, statusPath, ...args];
  await ferryJson<WorkloadInfo>(['run', '--host', host, '--name', name, '--cwd', dir, ...runFlags, '--', ...argv], env);
  const w = { name, kind, statusPath, dir };
  const deadline = Date.now() + 15_000;
  while (!status(w)) {
    if (Date.now() > deadline) throw new Error(`${name} wrote no status within 15 s`);
    await sleep(50);
  }
  return w;
}

export function status(w: LabWorkload): WorkloadStatus | null {
  try {
    return JSON.parse(readFileSync(w.statusPath, 'utf8')) as WorkloadStatus;
  } catch {
    return null;
  }
}

/** Resolves once the workload's progress passes `beyond` with its own checks passing. */
export async function progresses(w: LabWorkload, timeoutMs = 10_000): Promise<WorkloadStatus> {
  const beyond = status(w)?.progress ?? 0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = status(w);
    if (st && !st.ok) throw new Error(`${w.name} (${w.kind}) reported: ${st.error}`);
    if (st && st.progress > beyond) return st;
    if (Date.now() > deadline) throw new Error(`${w.name} (${w.kind}) made no progress beyond ${beyond} in ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Processes on this machine, not stopped, whose command line names the workload's status file. */
export function runningCopies(w: LabWorkload): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (!readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(w.statusPath)) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // The container's `unshare` shim carries the command line too; it holds namespaces, it is no copy.
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'unshare') continue;
      const state = stat.slice(stat.lastIndexOf(')') + 2)[0];
      if (state !== 'T' && state !== 't' && state !== 'Z') out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** What a user checks after a migration ended: ferry places it on `host`, one copy runs, and it is well. */
export async function expectRunsOnceOn(env: NodeJS.ProcessEnv, w: LabWorkload, host: string): Promise<WorkloadInfo> {
  const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
  const mine = ps.filter((p) => p.name === w.name);
  expect(mine.map((p) => [p.host, p.state])).toEqual([[host, 'running']]);
  // Only processes whose own command line names the status file: a multi-process workload's
  // children that re-exec differently are counted through ps instead.
  const copies = runningCopies(w);
  expect(copies.length, `processes of ${w.name} running: ${copies.join(',')}`).toBeGreaterThan(0);
  expect(mine[0]!.pids).toEqual(expect.arrayContaining(copies));
  await progresses(w);
  return mine[0]!;
}

/**
 * sqlite (WAL) holds POSIX locks on its files: read locks as long as a connection is open, write
 * locks while it writes. The lab's hosts share one filesystem, as hosts on shared storage do, so
 * the destination sees them: read locks travel (taken again beside the frozen source's, no
 * window); a write lock held at the preflight is refused before anything is frozen, naming the
 * lock; one taken after the preflight and held at the freeze rolls back at restore, naming the
 * lock. The workload then runs on, once, at its source; moved, it runs once at the destination.
 * Either way ferry does what it reports.
 */
export async function expectMovedOrLockRollback(env: NodeJS.ProcessEnv, w: LabWorkload, name: string, to: string, from: string): Promise<'moved' | 'refused' | 'rolledBack'> {
  const r = await ferry(['migrate', name, '--to', to, '--json'], env);
  const v = JSON.parse(r.stdout) as MigrationView;
  if (v.outcome === 'completed') {
    expect(r.code).toBe(0);
    await expectRunsOnceOn(env, w, to);
    return 'moved';
  }
  expect(v.outcome, v.error?.message).toBe('rolledBack');
  expect(r.code).toBe(3);
  const lock = String.raw`(POSIX|OFD|flock) write lock( on bytes \d+-(\d+|EOF))?`;
  if (v.error?.phase === 'preflight') expect(v.error.message).toMatch(new RegExp(`: its ${lock} cannot be carried to ${to}: ${to} sees`));
  else expect(v.error?.message).toMatch(new RegExp(`cannot take its ${lock.replace(' write ', ' (read|write) ')} again`));
  await expectRunsOnceOn(env, w, from);
  return v.error?.phase === 'preflight' ? 'refused' : 'rolledBack';
}
