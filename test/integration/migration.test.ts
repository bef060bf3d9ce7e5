// Migrations through the real coordinator, agents and NATS in a real lab: the engine's test
// workloads move between hosts and back and keep passing their own checks; what the engine
// cannot carry is refused at preflight, before anything is frozen, and the workload runs on.
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { MigrationView } from '../../shared/migration.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { workloadSupported, type WorkloadName } from '../workloads/harness.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { useLab, labEnv } from './helpers/lab.ts';
import { expectRunsOnceOn, progresses, runOnLab, status, expectMovedOrLockRollback } from './helpers/lab-workloads.ts';

const env = labEnv('itmig');

async function migrate(name: string, to: string): Promise<MigrationView> {
  const r = await ferry(['migrate', name, '--to', to, '--json'], env);
  const v = JSON.parse(r.stdout) as MigrationView;
  expect(v.outcome, `${name} -> ${to}: ${v.error?.message ?? ''}`).toBe('completed');
  expect(r.code).toBe(0);
  return v;
}



/** Waits until a process of the tree under `root` holds a descriptor whose target starts with `target`. */
async function untilTreeHolds(root: number, target: string): Promise<void> {
  const tree = (pid: number): number[] => {
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      // exited meanwhile
    }
    return [pid, ...kids.flatMap(tree)];
  };
  const holds = (pid: number) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSafe(`/proc/${pid}/fd/${fd}`).startsWith(target));
    } catch {
      return false;
    }
  };
  for (const end = Date.now() + 10_000; !tree(root).some(holds); await sleep(20)) {
    if (Date.now() > end) throw new Error(`no process under ${root} holds ${target}`);
  }
}

const readlinkSafe = (p: string): string => {
  try {
    return readlinkSync(p);
  } catch {
    return '';
  }
};

describe('migration through the coordinator', () => {
  useLab(env);

  it('moves a multi-threaded workload (AVX state in every thread) to h2 and back, its own checks passing', async () => {
    const w = await runOnLab(env, 'h1', 'threads-avx', 'avx', ['4']);
    await progresses(w);
    await progresses(w);
    const before = status(w)!;
    const there = await migrate('avx', 'h2');
    expect(there).toMatchObject({ from: 'h1', to: 'h2', committed: true, error: null, agentsLost: [] });
    expect(there.phases.map((p) => p.phase)).toEqual(['preflight', 'precopy', 'freeze', 'transfer', 'restore', 'commit', 'resume', 'cleanup']);
    expect(there.downtimeMs).toBeGreaterThan(0);
    expect(there.bytesTransferred).toBeGreaterThan(0);
    await expectRunsOnceOn(env, w, 'h2');
    await migrate('avx', 'h1');
    const back = await expectRunsOnceOn(env, w, 'h1');
    // The same threads (ids as the container sees them) carried their state through two moves.
    const after = status(w)!;
    const tids = (st: typeof before) => (st.threads as { tid: number }[]).map((t) => t.tid);
    expect(tids(before)).toHaveLength(4);
    expect(tids(before)).not.toContain(0);
    expect(tids(after)).toEqual(tids(before));
    expect(after.progress).toBeGreaterThan(before.progress);
    expect(back.state).toBe('running');
  });

  const kinds: [WorkloadName, string[]][] = [
    ['tree-pipes', []],
    ['event-loop', []],
    ['shm', []],
    ['files', []],
    ['clocks', []],
    ['memwriter', ['64', '20', 'hotset']],
    ['openmp', []],
    ['python-threads', []],
    ['sqlite', []],
  ];
  it.each(kinds)('%s: to h2 and back, its own checks pass on each host', async (kind, args) => {
    if (!workloadSupported(kind)) return;
    const name = kind.replace(/[^a-z0-9]/g, '');
    const w = await runOnLab(env, 'h1', kind, name, args);
    if (kind === 'sqlite') {
      await expectMovedOrLockRollback(env, w, name, 'h2', 'h1');
      await ferry(['stop', name], env);
      return;
    }
    await migrate(name, 'h2');
    await expectRunsOnceOn(env, w, 'h2');
    await migrate(name, 'h1');
    await expectRunsOnceOn(env, w, 'h1');
    await ferry(['stop', name], env);
  });

  it('refuses what the engine cannot carry at preflight, rolls back, and the workload runs on at its source', async () => {
    const out = `/tmp/ferry-it-mig-${process.pid}`;
    // tail -f watches a regular file through inotify, which the engine does not carry.
    writeFileSync(`${out}.watched`, '');
    const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'tailer', '--', '/bin/sh', '-c', `i=0; tail -f ${out}.watched & while :; do i=$((i+1)); echo $i > ${out}; sleep 0.05; done`], env);
    await untilTreeHolds(w.rootPid!, 'anon_inode:inotify');
    const r = await ferry(['migrate', 'tailer', '--to', 'h2', '--json'], env);
    expect(r.code).toBe(3);
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v).toMatchObject({ workload: 'tailer', from: 'h1', to: 'h2', outcome: 'rolledBack', committed: false, downtimeMs: null, bytesTransferred: 0 });
    expect(v.error).toMatchObject({ code: 'FERRY_UNSUPPORTED', phase: 'preflight' });
    expect(v.error?.message).toMatch(/^pid \d+ fd \d+: inotify is not supported/);
    expect(v.phases.map((p) => p.phase)).toEqual(['preflight']);

    // Still running where it was, never frozen: its counter keeps moving.
    const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(ps.filter((p) => p.name === 'tailer')).toMatchObject([{ host: 'h1', state: 'running', rootPid: w.rootPid }]);
    const a = Number(readFileSync(out, 'utf8'));
    for (const end = Date.now() + 10_000; Number(readFileSync(out, 'utf8')) <= a; await sleep(50)) {
      if (Date.now() > end) throw new Error('the tailer stopped counting');
    }

    const history = await ferryJson<MigrationView[]>(['history'], env);
    expect(history.map((h) => [h.id, h.outcome])).toContainEqual([v.id, 'rolledBack']);
    const one = await ferryJson<MigrationView>(['status', v.id], env);
    expect(one.outcome).toBe('rolledBack');
    const cancel = await ferry(['cancel', v.id], env);
    expect(cancel.code).toBe(2);
    expect(cancel.stderr).toContain('already ended');
    await ferry(['stop', 'tailer'], env);
  });

  it('rejects invalid requests with exit code 2 and records nothing', async () => {
    await ferryJson(['run', '--host', 'h1', '--name', 'idle', '--', '/bin/sleep', '1000'], env);
    const before = (await ferryJson<MigrationView[]>(['history'], env)).length;
    for (const [args, text] of [
      [['migrate', 'idle', '--to', 'h1'], 'already runs on h1'],
      [['migrate', 'idle', '--to', 'h9'], 'unknown host "h9"'],
      [['migrate', 'ghost', '--to', 'h2'], 'no running workload named "ghost"'],
    ] as const) {
      const r = await ferry([...args], env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(text);
    }
    expect(await ferryJson<MigrationView[]>(['history'], env)).toHaveLength(before);
  });
});
