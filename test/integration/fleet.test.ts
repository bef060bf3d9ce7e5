// Fleet operations in a real 3-host lab (issue 13): cordon, placement for `run` without a host,
// drain (live, parallel, durable across a coordinator's death, honouring --spread and --pinned)
// and rebalance. Asserted as an operator would check: every workload running exactly once where
// the drain put it, passing its own checks, a redis client that never saw an error on its one
// connection, the drain's record, the exit codes and `ferry hosts`.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import type { FleetJob } from '../../shared/fleet.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { HostView } from '../../shared/protocol.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { ferry, ferryJson } from './helpers/cli.ts';
import { LabClient, inClient } from './helpers/lab-clients.ts';
import { allAlive, freshLab, labEnv } from './helpers/lab.ts';
import { expectRunsOnceOn, runOnLab, type LabWorkload } from './helpers/lab-workloads.ts';

const env = labEnv('itfleet');
vi.setConfig({ testTimeout: 300_000 });

interface RedisStats {
  ok: number;
  failed: number;
  wrong: number;
  closed: boolean;
  error: string | null;
}

let lab: LabStatus;
const ps = () => ferryJson<WorkloadInfo[]>(['ps'], env);
const hosts = () => ferryJson<HostView[]>(['hosts'], env);
const on = async (host: string) => (await ps()).filter((w) => w.host === host && w.state !== 'exited');

/** Runs a redis-server container on `host` and waits until it answers. */
async function redisOn(host: string, name: string): Promise<string> {
  const w = await ferryJson<WorkloadInfo>(['run', '--host', host, '--name', name, '--', '/usr/bin/redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], env);
  for (let i = 0; (await inClient(lab.clientNamespace, ['redis-cli', '-h', w.address!, 'ping']).catch(() => '')) !== 'PONG'; i++) {
    if (i > 200) throw new Error('redis did not answer');
    await sleep(50);
  }
  return w.address!;
}

describe('fleet operations', () => {
  beforeAll(async () => {
    lab = await freshLab(env, 3);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
  });

  it('a cordoned host refuses run and incoming migrations (exit 2), shows as cordoned, and takes them again once uncordoned', async () => {
    const w = await runOnLab(env, 'h1', 'memwriter', 'cw', ['8', '10', 'random']);
    expect((await ferry(['cordon', 'h3', '--reason', 'kernel upgrade'], env)).code).toBe(0);
    expect((await hosts()).map((h) => [h.name, h.cordoned])).toEqual([['h1', false], ['h2', false], ['h3', true]]);
    const run = await ferry(['run', '--host', 'h3', '--name', 'refused', '--', '/bin/sleep', '100'], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/h3 is cordoned/);
    const mig = await ferry(['migrate', 'cw', '--to', 'h3'], env);
    expect(mig.code).toBe(2);
    expect(mig.stderr).toMatch(/h3 is cordoned: it takes no incoming migrations/);
    await expectRunsOnceOn(env, w, 'h1');
    // Placement never picks a cordoned host.
    const placed = await ferryJson<WorkloadInfo>(['run', '--name', 'placed', '--', '/bin/sleep', '1000'], env);
    expect(placed.host).not.toBe('h3');
    expect((await ferry(['uncordon', 'h3'], env)).code).toBe(0);
    expect((await hosts()).every((h) => !h.cordoned)).toBe(true);
    expect((await ferry(['migrate', 'cw', '--to', 'h3', '--json'], env)).code).toBe(0);
    await expectRunsOnceOn(env, w, 'h3');
    for (const n of ['cw', 'placed']) expect((await ferry(['stop', n], env)).code).toBe(0);
  });

  it('drain empties a host of 5 workloads live, in parallel: each runs once elsewhere, passes its checks, and the redis client sees no error', async () => {
    const ws: LabWorkload[] = [];
    for (const [i, kind] of (['memwriter', 'memwriter', 'tree-pipes', 'event-loop'] as const).entries()) ws.push(await runOnLab(env, 'h1', kind, `d${i}`, kind === 'memwriter' ? ['16', '10', 'random'] : []));
    const addr = await redisOn('h1', 'dredis');
    const pinger = new LabClient<RedisStats>(lab.clientNamespace, 'redis-pinger.ts', [addr, '6379', '5'], { statusFile: true });
    await pinger.until((s) => s.ok > 100);

    // The plan comes first: every workload has a destination on another host, nothing moves yet.
    const plan = await ferryJson<FleetJob>(['drain', 'h1', '--dry-run'], env);
    expect(plan).toMatchObject({ kind: 'drain', host: 'h1', dryRun: true });
    expect(plan.items.map((i) => i.workload).sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'dredis']);
    expect(plan.items.every((i) => i.to === 'h2' || i.to === 'h3')).toBe(true);
    expect(plan.expectedMs).toBeGreaterThan(0);
    expect((await hosts()).find((h) => h.name === 'h1')!.cordoned).toBe(false);
    expect(await on('h1')).toHaveLength(5);

    // 40 MB/s shared by 2 lanes: each migration's source paces its stream to 20 MB/s.
    const r = await ferry(['drain', 'h1', '--parallel', '2', '--bandwidth', '40', '--json'], env);
    const job = JSON.parse(r.stdout) as FleetJob;
    expect(job.state, r.stderr.slice(-2000)).toBe('done');
    expect(r.code).toBe(0);
    // Live progress: one JSON event per line, each move's state as it changed.
    const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { type: string; progress: { done: number; total: number } });
    expect(events.filter((e) => e.type === 'item.moved')).toHaveLength(5);
    expect(events.at(-1)!.progress).toMatchObject({ done: 5, total: 5 });

    expect(await on('h1')).toEqual([]);
    expect((await hosts()).find((h) => h.name === 'h1')!.cordoned).toBe(true);
    expect((await ferryJson<LabStatus>(['lab', 'status'], env)).hosts.map((h) => [h.name, h.cordoned])).toEqual([['h1', true], ['h2', false], ['h3', false]]);
    for (const item of job.items) expect(item).toMatchObject({ state: 'moved', from: 'h1' });
    for (const w of ws) await expectRunsOnceOn(env, w, job.items.find((i) => i.workload === w.name)!.to!);
    const at = pinger.status()!.ok;
    await pinger.until((s) => s.ok > at + 100);
    expect(await pinger.stop()).toMatchObject({ failed: 0, wrong: 0, closed: false, error: null });
    // The cap held: the first pre-copy round of each 16 MiB writer went no faster than its share (a tenth of a second's burst aside).
    for (const name of ['d0', 'd1']) {
      const v = await ferryJson<MigrationView>(['status', job.items.find((i) => i.workload === name)!.migrationId!], env);
      expect(v.rounds[0]!.bandwidthBps as number).toBeLessThanOrEqual(25e6);
    }
    // The record says the same.
    const recorded = await ferryJson<FleetJob>(['drains', job.id], env);
    expect(recorded).toMatchObject({ id: job.id, state: 'done' });
    for (const w of [...ws.map((x) => x.name), 'dredis']) expect((await ferry(['stop', w], env)).code).toBe(0);
    expect((await ferry(['uncordon', 'h1'], env)).code).toBe(0);
  });

  it('a pinned workload and one that fits nowhere stay and are named (exit 3); --spread keeps a group apart through a drain', async () => {
    // Memory requests: h2 and h3 have room for 10 GiB more each (the lab's hosts share this machine's memory), big asks 12 GiB.
    const total = (await hosts())[0]!.facts.memory.totalBytes;
    const gib = (n: number) => `${Math.floor(n / 2 ** 30)}G`;
    for (const h of ['h2', 'h3']) expect((await ferry(['run', '--host', h, '--name', `fill-${h}`, '--requests', `memory=${gib(total * 0.9 - 10 * 2 ** 30)}`, '--', '/bin/sleep', '1000'], env)).code).toBe(0);
    expect((await ferry(['run', '--host', 'h1', '--name', 'big', '--requests', 'memory=12G', '--', '/bin/sleep', '1000'], env)).code).toBe(0);
    // Group g: one on h1 and one on h2, spread: draining h1 must send its member to h3, not h2.
    expect((await ferry(['run', '--host', 'h1', '--name', 'g1', '--group', 'g', '--spread', '--', '/bin/sleep', '1000'], env)).code).toBe(0);
    expect((await ferry(['run', '--host', 'h2', '--name', 'g2', '--group', 'g', '--spread', '--', '/bin/sleep', '1000'], env)).code).toBe(0);
    const spreadClash = await ferry(['run', '--host', 'h2', '--name', 'g3', '--group', 'g', '--spread', '--', '/bin/sleep', '1000'], env);
    expect(spreadClash.code).toBe(2);
    expect((await ferry(['run', '--host', 'h1', '--name', 'pin', '--pinned', '--', '/bin/sleep', '1000'], env)).code).toBe(0);

    const r = await ferry(['drain', 'h1', '--json'], env);
    const job = JSON.parse(r.stdout) as FleetJob;
    expect(r.code).toBe(3);
    expect(job.state).toBe('incomplete');
    expect(job.items.find((i) => i.workload === 'pin')).toMatchObject({ state: 'stayed', reason: expect.stringMatching(/pinned/) });
    expect(job.items.find((i) => i.workload === 'g1')).toMatchObject({ state: 'moved', to: 'h3' });
    // A drain never overcommits a host's memory requests, and says which workload did not fit, and why.
    expect(job.items.find((i) => i.workload === 'big')).toMatchObject({ state: 'stayed', to: null, reason: expect.stringMatching(/memory/) });
    const now = await ps();
    expect(now.filter((w) => w.name === 'pin').map((w) => w.host)).toEqual(['h1']);
    expect(now.filter((w) => w.name === 'g1').map((w) => w.host)).toEqual(['h3']);
    expect(now.filter((w) => w.name === 'big').map((w) => w.host)).toEqual(['h1']);
    for (const n of ['g1', 'g2', 'pin', 'big', 'fill-h2', 'fill-h3']) expect((await ferry(['stop', n], env)).code).toBe(0);
    expect((await ferry(['uncordon', 'h1'], env)).code).toBe(0);
  });

  it('rebalance (--mode hybrid) moves workloads off a loaded host; run again, it moves nothing', async () => {
    const ws: LabWorkload[] = [];
    // Memory requests make h1 the loaded host (the lab's hosts share this machine's memory).
    for (let i = 0; i < 3; i++) ws.push(await runOnLab(env, 'h1', 'memwriter', `rb${i}`, ['8', '10', 'random'], ['--requests', 'memory=6G']));
    const before = await on('h1');
    expect(before).toHaveLength(3);
    const r = await ferry(['rebalance', '--mode', 'hybrid', '--json'], env);
    const job = JSON.parse(r.stdout) as FleetJob;
    expect(r.code, r.stderr.slice(-1000)).toBe(0);
    expect(job.mode).toBe('hybrid');
    for (const i of job.items) expect((await ferryJson<MigrationView>(['status', i.migrationId!], env)).mode).toBe('hybrid');
    expect(job.items.length).toBeGreaterThan(0);
    expect(job.items.every((i) => i.from === 'h1' && i.state === 'moved')).toBe(true);
    expect(job.imbalance!.after).toBeLessThan(job.imbalance!.before);
    expect((await on('h1')).length).toBeLessThan(3);
    for (const w of ws) await expectRunsOnceOn(env, w, (await ps()).find((p) => p.name === w.name)!.host);
    const again = await ferryJson<FleetJob>(['rebalance', '--json'], env);
    expect(again.items).toEqual([]);
    for (const w of ws) expect((await ferry(['stop', w.name], env)).code).toBe(0);
  });

  it('a drain whose coordinator dies is finished by the standby', async () => {
    const ws: LabWorkload[] = [];
    for (let i = 0; i < 3; i++) ws.push(await runOnLab(env, 'h2', 'memwriter', `k${i}`, ['16', '10', 'random']));
    expect((await ferry(['lab', 'start', 'coordinator2'], env)).code).toBe(0);
    const draining = ferry(['drain', 'h2', '--parallel', '1', '--json'], env);
    // Once the first move is under way, the leader dies.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const jobs = await ferryJson<FleetJob[]>(['drains'], env).catch(() => []);
      const j = jobs.find((x) => x.host === 'h2' && x.state === 'running');
      if (j?.items.some((i) => i.state === 'migrating' || i.state === 'moved')) break;
      if (Date.now() > deadline) throw new Error('the drain never started moving');
      await sleep(100);
    }
    expect((await ferry(['lab', 'kill', 'coordinator'], env)).code).toBe(0);
    // The CLI follows the drain across the failover; the standby carries it on by itself.
    const r = await draining;
    const job = JSON.parse(r.stdout) as FleetJob;
    expect(job.state, r.stderr.slice(-1500)).toBe('done');
    expect(r.code).toBe(0);
    expect(await ferryJson<FleetJob>(['drains', job.id], env)).toMatchObject({ state: 'done' });
    expect(await on('h2')).toEqual([]);
    for (const w of ws) await expectRunsOnceOn(env, w, job!.items.find((i) => i.workload === w.name)!.to!);
    expect((await ferry(['lab', 'start', 'coordinator'], env)).code).toBe(0);
    await allAlive(env);
  });
});
