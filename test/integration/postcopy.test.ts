// Post-copy and hybrid migration (docs/postcopy.md) through the real coordinator, agents and NATS
// in a real lab: every test workload moves with --mode postcopy and back with --mode hybrid and
// keeps passing its own checks; while pages still travel, status says that only the source
// holds a complete copy, and the report carries post-copy's figures; a destination lost during
// post-copy ends the workload at once (it never runs on zero-filled pages, nor twice); a
// rollback before the resume leaves it running on its source.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { MigrationView } from '../../shared/migration.ts';
import { workloadSupported, type WorkloadName } from '../workloads/harness.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { allAlive, labEnv, useLab } from './helpers/lab.ts';
import { expectRunsOnceOn, progresses, runOnLab, runningCopies, status } from './helpers/lab-workloads.ts';

const env = labEnv('itpost');

async function migrate(name: string, to: string, extra: string[]): Promise<MigrationView> {
  const r = await ferry(['migrate', name, '--to', to, '--json', ...extra], env);
  const v = JSON.parse(r.stdout) as MigrationView;
  expect(v.outcome, `${name} -> ${to} ${extra.join(' ')}: ${v.error?.message ?? ''}`).toBe('completed');
  expect(r.code).toBe(0);
  return v;
}

/** What a post-copy switchover reports once every page arrived. */
function expectPostcopied(v: MigrationView): void {
  expect(v.postcopy).toMatchObject({ state: 'completed', completeCopy: 'destination', lost: null });
  const f = v.postcopy!.figures!;
  expect(f.pagesOutstanding).toBeGreaterThan(0);
  // Every page that was outstanding at the resume came one way or another, or the workload threw it away first.
  expect(f.pagesPushed + f.pagesFetched + f.pagesDropped).toBeGreaterThanOrEqual(f.pagesOutstanding);
  expect(f.bytesPushed + f.bytesFetched).toBeGreaterThan(0);
  if (f.demandFaults > 0) expect(f.faultLatencyMs).toMatchObject({ median: expect.any(Number), p99: expect.any(Number) });
}

/** Mappings of a process registered with a userfaultfd, for missing pages (um) or write-protect (uw). */
const uffdMappings = (pid: number): number =>
  readFileSync(`/proc/${pid}/smaps`, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('VmFlags:') && /\bu[mw]\b/.test(l)).length;

/** Not registered with any userfaultfd any more (post-copy over, the workload on its own). */
async function expectUnregistered(name: string): Promise<void> {
  const ps = await ferryJson<{ name: string; rootPid: number | null }[]>(['ps'], env);
  const pid = ps.find((p) => p.name === name)!.rootPid!;
  expect(uffdMappings(pid)).toBe(0);
}

async function statusOf(name: string): Promise<MigrationView | undefined> {
  const vs = await ferryJson<MigrationView[]>(['status'], env);
  return vs.find((x) => x.workload === name);
}

describe('post-copy and hybrid migration', () => {
  useLab(env);

  /** Starts a paced post-copy of a fresh memwriter and resolves once status says it runs on h2 with pages still to come. */
  async function duringPostcopy(name: string, extra: string[] = []): Promise<{ w: Awaited<ReturnType<typeof runOnLab>>; migrating: ReturnType<typeof ferry>; restoredPid: number; seen: MigrationView }> {
    const w = await runOnLab(env, 'h1', 'memwriter', name, ['32', '100', 'random']);
    while (status(w)?.phase !== 'running') await sleep(50);
    const migrating = ferry(['migrate', name, '--to', 'h2', '--json', '--mode', 'postcopy', '--bandwidth', '8', ...extra], env);
    let seen: MigrationView | undefined;
    for (const deadline = Date.now() + 60_000; !seen; ) {
      const v = await statusOf(name);
      if (v?.postcopy?.state === 'running') seen = v;
      else if (v?.outcome || Date.now() > deadline) throw new Error(`post-copy never ran: ${JSON.stringify(v?.postcopy)} ${v?.outcome}`);
      else await sleep(50);
    }
    const restored = (await ferryJson<{ name: string; host: string; rootPid: number | null }[]>(['ps'], env)).find((p) => p.name === name && p.host === 'h2');
    return { w, migrating, restoredPid: restored!.rootPid!, seen };
  }

  const kinds: WorkloadName[] = ['threads-avx', 'tree-pipes', 'event-loop', 'shm', 'files', 'clocks', 'openmp', 'python-threads'];
  it.each(kinds)('%s: to h2 with --mode postcopy and back with --mode hybrid, its own checks pass on each host', async (kind) => {
    if (!workloadSupported(kind)) return;
    const name = `pc${kind.replace(/[^a-z0-9]/g, '')}`;
    const w = await runOnLab(env, 'h1', kind, name);
    await progresses(w);
    const there = await migrate(name, 'h2', ['--mode', 'postcopy']);
    expect(there.mode).toBe('postcopy');
    // A workload that wrote nothing anonymous during its one round has nothing left for after the resume.
    if (there.postcopy?.figures) expectPostcopied(there);
    await expectRunsOnceOn(env, w, 'h2');
    await expectUnregistered(name);
    const back = await migrate(name, 'h1', ['--mode', 'hybrid']);
    expect(back.mode).toBe('hybrid');
    await expectRunsOnceOn(env, w, 'h1');
    await expectUnregistered(name);
    await ferry(['stop', name], env);
  });

  it('dirtier: mappings moved, dropped and unmapped, a child, and forks while post-copy fills the memory: every check passes', async () => {
    const w = await runOnLab(env, 'h1', 'dirtier', 'pcchurn', ['16', 'threads,churn,fork,forkloop']);
    await progresses(w);
    const child = () => JSON.parse(readFileSync(`${w.statusPath}.child`, 'utf8')) as { ok: boolean; error: string | null; progress: number };
    for (const [to, mode] of [
      ['h2', 'postcopy'],
      ['h1', 'hybrid'],
    ] as const) {
      // Its churn opens /proc/self/maps for a moment now and then: a freeze that catches a /proc file
      // open refuses (the engine cannot carry one) and rolls back, leaving it running; then again.
      for (let attempt = 1; ; attempt++) {
        const r = await ferry(['migrate', 'pcchurn', '--to', to, '--json', '--mode', mode], env);
        const v = JSON.parse(r.stdout) as MigrationView;
        if (v.outcome === 'completed') {
          // Its writer threads keep anonymous pages dirty: post-copy has pages to carry, for both processes.
          if (mode === 'postcopy') expectPostcopied(v);
          break;
        }
        expect(v.outcome).toBe('rolledBack');
        expect(v.error?.message).toMatch(/^cannot reopen fd \d+ of pid \d+: \/proc\//);
        expect(status(w)).toMatchObject({ ok: true });
        if (attempt === 5) throw new Error(`pcchurn -> ${to}: rolled back ${attempt} times: ${v.error?.message}`);
      }
      // Forked checkers read their copy of every slot: pages that arrived, and pages that were still on their way at the fork.
      const forks = status(w)!.forks_checked as number;
      const childProgress = child().progress;
      for (const deadline = Date.now() + 30_000; (status(w)!.forks_checked as number) < forks + 2 || child().progress <= childProgress; ) {
        if (Date.now() > deadline) throw new Error(`no progress on ${to}: ${JSON.stringify(status(w))} ${JSON.stringify(child())}`);
        if (!status(w)!.ok || !child().ok) break;
        await sleep(100);
      }
      expect(status(w)).toMatchObject({ ok: true, error: null });
      expect(child()).toMatchObject({ ok: true, error: null });
      const ps = await ferryJson<{ name: string; host: string; state: string }[]>(['ps'], env);
      expect(ps.filter((p) => p.name === 'pcchurn').map((p) => [p.host, p.state])).toEqual([[to, 'running']]);
      await expectUnregistered('pcchurn');
    }
    await ferry(['stop', 'pcchurn'], env);
  });

  it('a writer that outruns pre-copy: post-copy and hybrid move it without throttling, every page intact, with figures', async () => {
    const w = await runOnLab(env, 'h1', 'memwriter', 'pcheavy', ['128', '200', 'random']);
    while (status(w)?.phase !== 'running') await sleep(50);
    const there = await migrate('pcheavy', 'h2', ['--mode', 'postcopy']);
    expect(there.rounds).toHaveLength(1);
    expect(there.switchover).toBe('round-limit');
    expectPostcopied(there);
    expect(there.rounds.some((r) => r.throttled)).toBe(false);
    await expectRunsOnceOn(env, w, 'h2');
    // Its own sweep covers every page: passes only if each page holds what the writer last put there.
    const sweeps = status(w)!.sweeps as number;
    while ((status(w)!.sweeps as number) < sweeps + 2 && status(w)!.ok) await sleep(100);
    expect(status(w)).toMatchObject({ ok: true, error: null });
    // A budget no round can meet: hybrid switches over to post-copy where pre-copy would throttle.
    const back = await migrate('pcheavy', 'h1', ['--mode', 'hybrid', '--downtime-budget', '1']);
    expect(back.rounds.some((r) => r.throttled)).toBe(false);
    expectPostcopied(back);
    await expectRunsOnceOn(env, w, 'h1');
    const s2 = status(w)!.sweeps as number;
    while ((status(w)!.sweeps as number) < s2 + 2 && status(w)!.ok) await sleep(100);
    expect(status(w)).toMatchObject({ ok: true, error: null });
    await ferry(['stop', 'pcheavy'], env);
  });

  it('while pages travel, status says only the source holds a complete copy', async () => {
    const { w, migrating, seen } = await duringPostcopy('pcslow');
    expect(seen.postcopy, 'status during post-copy').toMatchObject({ state: 'running', completeCopy: 'source' });
    expect(seen.committed).toBe(true);
    const v = JSON.parse((await migrating).stdout) as MigrationView;
    expect(v.outcome).toBe('completed');
    expectPostcopied(v);
    await expectRunsOnceOn(env, w, 'h2');
    await ferry(['stop', 'pcslow'], env);
  });

  it('the destination agent killed during post-copy: the workload is ended at once, runs nowhere, and the migration says why', async () => {
    const { w, migrating, restoredPid } = await duringPostcopy('pclost');
    await ferry(['lab', 'kill', 'h2'], env);
    // Its keeper ends it: no thread of it may go on with pages it does not have.
    for (const deadline = Date.now() + 10_000; existsSync(`/proc/${restoredPid}`); ) {
      if (Date.now() > deadline) throw new Error('the restored workload outlived its agent during post-copy');
      await sleep(20);
    }
    // Back, it says what became of the workload (the coordinator asks it first after post-copy).
    expect((await ferry(['lab', 'start', 'h2'], env)).code).toBe(0);
    const r = await migrating;
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v).toMatchObject({ outcome: 'failed', committed: true });
    expect(v.error).toMatchObject({ kind: 'postcopyLost', phase: 'cleanup' });
    expect(v.postcopy).toMatchObject({ state: 'lost', completeCopy: 'none' });
    // The frozen original was ended too: nothing of the workload runs anywhere.
    expect(runningCopies(w)).toEqual([]);
    await allAlive(env);
  });

  it('the source agent killed during post-copy without a backup: the workload is ended at once on the destination', async () => {
    const { w, migrating, restoredPid } = await duringPostcopy('pcnosrc');
    await ferry(['lab', 'kill', 'h1'], env);
    for (const deadline = Date.now() + 10_000; existsSync(`/proc/${restoredPid}`); ) {
      if (Date.now() > deadline) throw new Error('the restored workload went on without its source during post-copy');
      await sleep(20);
    }
    expect((await ferry(['lab', 'start', 'h1'], env)).code).toBe(0);
    const v = JSON.parse((await migrating).stdout) as MigrationView;
    expect(v).toMatchObject({ outcome: 'failed', committed: true });
    expect(v.error).toMatchObject({ kind: 'postcopyLost', phase: 'cleanup' });
    expect(runningCopies(w)).toEqual([]);
    await allAlive(env);
  });

  it('the source agent killed during post-copy with --postcopy-backup: the workload survives on the destination, every page intact', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-pc-backup-'));
    const { w, migrating, restoredPid } = await duringPostcopy('pcsaved', ['--postcopy-backup', dir]);
    await ferry(['lab', 'kill', 'h1'], env);
    // It runs on, on pages from the backup: its own sweep checks every page against what it wrote.
    const sweeps = status(w)!.sweeps as number;
    for (const deadline = Date.now() + 30_000; (status(w)!.sweeps as number) < sweeps + 2; ) {
      if (Date.now() > deadline) throw new Error(`no full sweep after the source was lost: ${JSON.stringify(status(w))}`);
      await sleep(100);
    }
    expect(status(w)).toMatchObject({ ok: true, error: null });
    expect(existsSync(`/proc/${restoredPid}`)).toBe(true);
    expect((await ferry(['lab', 'start', 'h1'], env)).code).toBe(0);
    const v = JSON.parse((await migrating).stdout) as MigrationView;
    expect(v.outcome, v.error?.message).toBe('completed');
    expect(v.postcopy?.figures?.pagesFromBackup).toBeGreaterThan(0);
    await expectRunsOnceOn(env, w, 'h2');
    // The backup served its turn.
    expect(readdirSync(dir)).toEqual([]);
    await allAlive(env);
    await ferry(['stop', 'pcsaved'], env);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a rollback before the resume (verification fails) leaves the workload running on its source, untracked', async () => {
    await ferry(['lab', 'kill', 'h2'], env);
    expect((await ferry(['lab', 'start', 'h2', '--env', 'FERRY_FAULT=agent:restore:corrupt-byte'], env)).code).toBe(0);
    await allAlive(env);
    try {
      const w = await runOnLab(env, 'h1', 'memwriter', 'pcback', ['64', '100', 'random']);
      while (status(w)?.phase !== 'running') await sleep(50);
      const r = await ferry(['migrate', 'pcback', '--to', 'h2', '--json', '--mode', 'postcopy'], env);
      expect(r.code).toBe(3);
      const v = JSON.parse(r.stdout) as MigrationView;
      expect(v).toMatchObject({ outcome: 'rolledBack', committed: false });
      expect(v.error?.message).toMatch(/^verification failed/);
      await expectRunsOnceOn(env, w, 'h1');
      await expectUnregistered('pcback');
      await ferry(['stop', 'pcback'], env);
    } finally {
      await ferry(['lab', 'kill', 'h2'], env);
      await ferry(['lab', 'start', 'h2'], env);
      await allAlive(env);
    }
  });
});
