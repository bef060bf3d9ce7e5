// Live migration (pre-copy with warm restore) through the real coordinator, agents and NATS in a
// real lab: every test workload moves to another host and back while it runs and keeps passing
// its own checks; a write-heavy one needs several rounds, each reported; the hashing tracker
// does the same job when forced; a heavy writer that outruns the link is throttled, and let go;
// a migration cancelled during pre-copy leaves the workload on its source, untracked, at full
// speed.
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { MigrationView } from '../../shared/migration.ts';
import type { MigrationEvent } from '../../shared/migration-events.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { workloadSupported, type WorkloadName } from '../workloads/harness.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { allAlive, useLab, labEnv } from './helpers/lab.ts';
import { expectRunsOnceOn, progresses, runOnLab, status, expectMovedOrLockRollback } from './helpers/lab-workloads.ts';
import { uffdRegistered } from './helpers/precopy.ts';

const env = labEnv('itlive');

async function migrate(name: string, to: string, extra: string[] = []): Promise<MigrationView & { events: MigrationEvent[] }> {
  const r = await ferry(['migrate', name, '--to', to, '--json', ...extra], env);
  const v = JSON.parse(r.stdout) as MigrationView;
  expect(v.outcome, `${name} -> ${to}: ${v.error?.message ?? ''}`).toBe('completed');
  expect(r.code).toBe(0);
  // --json: one event per line on stderr.
  const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as MigrationEvent);
  return { ...v, events };
}

/**
 * Each pre-copy round was reported while it ran: at its start (nothing sent yet, the round's
 * pages to go), then never going back; what `watch` and `status` showed meanwhile counted it.
 */
function expectProgressReported(v: MigrationView & { events: MigrationEvent[] }): void {
  const reports = v.events.filter((e): e is Extract<MigrationEvent, { type: 'transfer.progress' }> => e.type === 'transfer.progress');
  for (const r of v.rounds) {
    const mine = reports.filter((e) => e.data.phase === 'precopy' && e.data.round === r.round);
    expect(mine[0]?.data, `round ${r.round} reported at its start`).toMatchObject({ pagesDone: 0, pagesTotal: r.pagesDirty, bytesRaw: 0 });
    for (let i = 1; i < mine.length; i++) expect(mine[i]!.data.pagesDone).toBeGreaterThanOrEqual(mine[i - 1]!.data.pagesDone);
    for (const e of mine) {
      expect(e.view.inFlight).toEqual(e.data);
      expect(e.data.pagesDone).toBeLessThanOrEqual(r.pagesDirty);
    }
  }
  expect(v.inFlight).toBeNull();
}

/** Every round carries its statistics; the view says what pre-copy did. */
function expectLive(v: MigrationView, tracker: string): void {
  expect(v.phases.map((p) => p.phase)).toEqual(['preflight', 'precopy', 'freeze', 'transfer', 'restore', 'commit', 'resume', 'cleanup']);
  expect(v.rounds.length).toBeGreaterThan(0);
  for (const r of v.rounds) {
    expect(r).toMatchObject({
      pagesScanned: expect.any(Number),
      pagesDirty: expect.any(Number),
      pagesSent: expect.any(Number),
      bytesOnWire: expect.any(Number),
      compressionRatio: expect.any(Number),
      durationMs: expect.any(Number),
      dirtyRateBps: expect.any(Number),
      bandwidthBps: expect.any(Number),
      predictedDowntimeMs: expect.any(Number),
      tracker,
    });
  }
  expect(v.tracker).toBe(tracker);
  expect(v.predictedDowntimeMs).toEqual(expect.any(Number));
  expect(v.downtimeMs).toBeGreaterThan(0);
  expect(v.switchover).toMatch(/^(budget|fixed-costs|no-progress|round-limit)$/);
}

async function hostOf(name: string): Promise<WorkloadInfo> {
  const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
  return ps.find((p) => p.name === name)!;
}

/** Not tracked (no userfaultfd registration left) and not CPU-limited by a migration. */
function expectUntracked(pid: number): void {
  expect(uffdRegistered(pid)).toBe(0);
  expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).not.toContain('ferry-throttle');
}



describe('live migration', () => {
  useLab(env);

  const kinds: [WorkloadName, string[]][] = [
    ['threads-avx', []],
    ['tree-pipes', []],
    ['event-loop', []],
    ['shm', []],
    ['files', []],
    ['clocks', []],
    ['openmp', []],
    ['python-threads', []],
    ['sqlite', []],
  ];
  it.each(kinds)('%s: to h2 and back while it runs, its own checks pass on each host', async (kind, args) => {
    if (!workloadSupported(kind)) return;
    const name = `live${kind.replace(/[^a-z0-9]/g, '')}`;
    const w = await runOnLab(env, 'h1', kind, name, args);
    await progresses(w);
    if (kind === 'sqlite') {
      await expectMovedOrLockRollback(env, w, name, 'h2', 'h1');
      await ferry(['stop', name], env);
      return;
    }
    expectLive(await migrate(name, 'h2'), 'uffd-wp');
    await expectRunsOnceOn(env, w, 'h2');
    expectLive(await migrate(name, 'h1'), 'uffd-wp');
    await expectRunsOnceOn(env, w, 'h1');
    await ferry(['stop', name], env);
  });

  it('a write-heavy workload takes several rounds, back and forth, every page intact', async () => {
    const w = await runOnLab(env, 'h1', 'memwriter', 'heavy', ['256', '100', 'random']);
    while (status(w)?.phase !== 'running') await sleep(100);
    let at = 'h1';
    for (let i = 0; i < 3; i++) {
      const to = at === 'h1' ? 'h2' : 'h1';
      const v = await migrate('heavy', to);
      expectLive(v, 'uffd-wp');
      expectProgressReported(v);
      expect(v.rounds.length).toBeGreaterThan(1);
      // Round 1 carries the whole region; later ones only what was written meanwhile.
      expect(Number(v.rounds[0]!.pagesSent)).toBeGreaterThan(60_000);
      expect(Number(v.rounds.at(-1)!.pagesDirty)).toBeLessThan(Number(v.rounds[0]!.pagesDirty));
      at = to;
      await expectRunsOnceOn(env, w, at);
      expectUntracked((await hostOf('heavy')).rootPid!);
    }
    await ferry(['stop', 'heavy'], env);
  });

  it('the hashing tracker does the same job when forced (FERRY_DIRTY_TRACKING=hash)', async () => {
    for (const h of ['h1', 'h2']) {
      await ferry(['lab', 'kill', h], env);
      expect((await ferry(['lab', 'start', h, '--env', 'FERRY_DIRTY_TRACKING=hash'], env)).code).toBe(0);
    }
    await allAlive(env);
    try {
      const w = await runOnLab(env, 'h1', 'memwriter', 'hashed', ['64', '20', 'hotset']);
      while (status(w)?.phase !== 'running') await sleep(100);
      expectLive(await migrate('hashed', 'h2'), 'hash');
      await expectRunsOnceOn(env, w, 'h2');
      expectLive(await migrate('hashed', 'h1'), 'hash');
      await expectRunsOnceOn(env, w, 'h1');
      await ferry(['stop', 'hashed'], env);
    } finally {
      for (const h of ['h1', 'h2']) {
        await ferry(['lab', 'kill', h], env);
        await ferry(['lab', 'start', h], env);
      }
      await allAlive(env);
    }
  });

  it('a writer that outruns the link is throttled, the migration ends, and the workload runs at full speed', async () => {
    // Unpaced (3000 MB/s asks for more than it can do) over a link capped at 16 MB/s: whatever CPU
    // a busy machine leaves the writer, every round finds nearly the whole region dirty again.
    const w = await runOnLab(env, 'h1', 'memwriter', 'racer', ['64', '3000', 'random']);
    while (status(w)?.phase !== 'running') await sleep(100);
    // A budget no round can meet: the rule throttles once rounds stop shrinking, then switches over.
    const v = await migrate('racer', 'h2', ['--downtime-budget', '1', '--max-rounds', '12', '--bandwidth', '16']);
    expectLive(v, 'uffd-wp');
    expect(v.rounds.some((r) => r.throttled === true), `rounds: ${JSON.stringify(v.rounds.map((r) => [r.pagesScanned, r.pagesDirty, r.dirtyRateBps, r.bandwidthBps, r.linkMeasured, r.throttled]))}; ${v.switchover}`).toBe(true);
    expect(v.switchover).toMatch(/^(no-progress|round-limit|fixed-costs)$/);
    await expectRunsOnceOn(env, w, 'h2');
    expectUntracked((await hostOf('racer')).rootPid!);
    await ferry(['stop', 'racer'], env);
  });

  it('cancelled during pre-copy, the workload runs on at its source, untracked and unthrottled', async () => {
    const w = await runOnLab(env, 'h1', 'memwriter', 'kept', ['128', '200', 'random']);
    while (status(w)?.phase !== 'running') await sleep(100);
    const before = await hostOf('kept');
    // A link capped at 16 MB/s: each round of the region takes seconds, so the cancel lands in pre-copy.
    const migrating = ferry(['migrate', 'kept', '--to', 'h2', '--json', '--downtime-budget', '1', '--max-rounds', '1000', '--bandwidth', '16'], env);
    // Cancelled once round 1 (the whole region) went: the tracker runs, the destination holds husks.
    let id = '';
    const deadline = Date.now() + 60_000;
    for (;;) {
      const vs = await ferryJson<MigrationView[]>(['status'], env);
      const v = vs.find((x) => x.workload === 'kept');
      if (v) id = v.id;
      if (v && v.state.startsWith('precopy') && v.rounds.length >= 1) break;
      if (Date.now() > deadline) throw new Error('pre-copy never got going');
      await sleep(100);
    }
    expect((await ferry(['cancel', id], env)).code).toBe(0);
    const r = await migrating;
    expect(r.code).toBe(3);
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v).toMatchObject({ outcome: 'rolledBack', committed: false });
    expect(v.error).toMatchObject({ kind: 'cancelled', phase: 'precopy' });
    // Never moved: the same process runs on h1 (its launcher shows the same command line, so
    // the copies are counted through ps), and nothing of it is left on h2.
    const info = await hostOf('kept');
    expect(info).toMatchObject({ host: 'h1', state: 'running', rootPid: before.rootPid });
    await progresses(w);
    expectUntracked(info.rootPid!);
    // Unthrottled: no process of it is left in the migration's throttle group (cgroup v1) or under
    // a quota the workload did not have (v2: its own cpu.max is back).
    for (const pid of info.pids) expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).not.toContain(`ferry-throttle-${id}`);
    if (info.cgroup && existsSync(`${info.cgroup}/cpu.max`)) expect(readFileSync(`${info.cgroup}/cpu.max`, 'utf8').trim()).toMatch(/^max /);
    await ferry(['stop', 'kept'], env);
  });
});

