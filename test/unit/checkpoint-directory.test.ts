// The coordinator's record of checkpointed workloads (coordinator/checkpoints.ts), agents and KV
// faked: a restore is refused while the workload runs anywhere or a lost host may run it; a
// checkpointed workload is listed by `ps` with where it is; its address stays reserved; the
// operations are kept for history, failures included.
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../../coordinator/agents.ts';
import { CheckpointDirectory } from '../../coordinator/checkpoints.ts';
import type { ClusterView } from '../../coordinator/cluster.ts';
import { RecordBucket } from '../../coordinator/fleet/bucket.ts';
import type { MigrationManager } from '../../coordinator/migrations.ts';
import { RecordQuarantine } from '../../coordinator/quarantine.ts';
import { WorkloadDirectory } from '../../coordinator/workloads.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { CheckpointRecord } from '../../shared/job-image.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { FakeKv } from './fake-kv.ts';
import { runningWorkload } from './workload-info.ts';


/** h1 and h2 alive (h3 lost when asked); `running` is what the agents report; calls are recorded. */
function setup(o: { lostHolding?: string[] } = {}) {
  const running: WorkloadInfo[] = [];
  const calls: string[] = [];
  let failNext: FerryError | null = null;
  const hosts = [
    { name: 'h1', alive: true, cordoned: false, facts: { address: '10.77.0.11' } },
    { name: 'h2', alive: true, cordoned: false, facts: { address: '10.77.0.12' } },
    ...(o.lostHolding ? [{ name: 'h3', alive: false, cordoned: false, facts: { address: '10.77.0.13' } }] : []),
  ];
  const cluster = {
    hosts: () => hosts,
    lastClaims: () => ({ claims: (o.lostHolding ?? []).map((name) => ({ name, address: null })), seenMono: performance.now() }),
    isCordoned: () => false,
  } as unknown as ClusterView;
  const agents = {
    call: async (host: string, endpoint: string, req: { name: string; images: string; leaveRunning?: boolean; takenAddresses?: string[] }) => {
      if (endpoint === 'workloads') return running.filter((w) => w.host === host);
      calls.push(`${host}:${endpoint}:${req.name}${req.takenAddresses ? `:${req.takenAddresses.join(',')}` : ''}`);
      if (failNext) {
        const e = failNext;
        failNext = null;
        throw e;
      }
      const snap = { workload: req.name, host, images: req.images, snapshot: `${req.images}/ckpt-000001`, seq: 1 };
      if (endpoint === 'job.checkpoint') {
        const w = running.find((x) => x.name === req.name)!;
        if (!req.leaveRunning) running.splice(running.indexOf(w), 1);
        return { ...snap, processes: 1, threads: 1, pagesBytes: 4096, frozenMs: 5, totalMs: 9, leftRunning: !!req.leaveRunning, command: w.command, address: w.address };
      }
      running.push(runningWorkload(req.name, host, '10.77.1.5', ['job']));
      return { ...snap, pid: 200, address: '10.77.1.5', processes: 1, totalMs: 12 };
    },
  } as unknown as AgentClient;
  const workloads = new WorkloadDirectory(cluster, agents, { pool: null, findRetryMs: 0 });
  const quarantine = new RecordQuarantine({ publish: () => undefined } as unknown as NatsConnection, new FakeKv('q') as unknown as KV, pino({ level: 'silent' }), 'test');
  const kv = new FakeKv('ferry_checkpoints');
  const records = new RecordBucket('ferry_checkpoints', kv as unknown as KV, CheckpointRecord, quarantine, () => true, kv.listKeys);
  const migrations = { migrating: () => false } as unknown as MigrationManager;
  const dir = new CheckpointDirectory(records, workloads, migrations, cluster, agents);
  workloads.reservedAddresses = () => dir.reservedAddresses();
  return { dir, workloads, running, calls, failWith: (e: FerryError) => (failNext = e) };
}

describe('checkpointed workloads, cluster-wide', () => {
  it('a checkpoint ends the workload and ps lists it checkpointed, with its images and last host; its address stays reserved', async () => {
    const t = setup();
    t.running.push(runningWorkload('sim', 'h1', '10.77.1.5', ['job']));
    await t.dir.checkpoint({ name: 'sim', images: '/shared/sim', leaveRunning: false });
    const ps = await t.dir.listing(await t.workloads.list());
    expect(ps.workloads.map((w) => [w.name, w.host, w.state, w.images, w.address])).toEqual([['sim', 'h1', 'checkpointed', '/shared/sim', '10.77.1.5']]);
    expect(await t.dir.reservedAddresses()).toEqual(['10.77.1.5']);
  });

  it('restores where it was by default, then lists it running there; history has both operations, newest first', async () => {
    const t = setup();
    t.running.push(runningWorkload('sim', 'h2', '10.77.1.5', ['job']));
    await t.dir.checkpoint({ name: 'sim', images: '/shared/sim', leaveRunning: false });
    const r = await t.dir.restore({ name: 'sim', images: '/shared/sim' });
    expect(r.host).toBe('h2');
    const ps = await t.dir.listing(await t.workloads.list());
    expect(ps.workloads.map((w) => [w.host, w.state, w.images])).toEqual([['h2', 'running', '/shared/sim']]);
    expect((await t.dir.operations(true)).map((o) => [o.kind, o.host, o.state])).toEqual([
      ['restore', 'h2', 'completed'],
      ['checkpoint', 'h2', 'completed'],
    ]);
    expect(await t.dir.reservedAddresses()).toEqual([]);
  });

  it('refuses a restore while the workload runs anywhere, before any agent is asked', async () => {
    const t = setup();
    t.running.push(runningWorkload('sim', 'h1', '10.77.1.5', ['job']));
    const err = await t.dir.restore({ name: 'sim', images: '/shared/sim', host: 'h2' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FerryError);
    expect((err as FerryError).code).toBe(ErrorCode.InvalidRequest);
    expect((err as FerryError).message).toMatch(/"sim" is running on h1/);
    expect(t.calls).toEqual([]);
  });

  it('refuses a restore while a lost host may still run it (exit 4), before any agent is asked', async () => {
    const t = setup({ lostHolding: ['sim'] });
    const err = (await t.dir.restore({ name: 'sim', images: '/shared/sim', host: 'h2' }).catch((e: unknown) => e)) as FerryError;
    expect(err.code).toBe(ErrorCode.Unavailable);
    expect(err.message).toMatch(/h3, which is lost/);
    expect(t.calls).toEqual([]);
  });

  it("tells the agent every address in use, so a restore never takes another workload's", async () => {
    const t = setup();
    t.running.push(runningWorkload('other', 'h1', '10.77.1.9', ['job']));
    await t.dir.restore({ name: 'sim', images: '/shared/sim', host: 'h2' });
    expect(t.calls).toEqual(['h2:job.restore:sim:10.77.1.9']);
  });

  it('a failed checkpoint is recorded failed, and the workload is not taken for checkpointed', async () => {
    const t = setup();
    t.running.push(runningWorkload('sim', 'h1', null, ['job']));
    await t.dir.checkpoint({ name: 'sim', images: '/shared/sim', leaveRunning: true });
    t.failWith(new FerryError(ErrorCode.Unsupported, 'io_uring'));
    await expect(t.dir.checkpoint({ name: 'sim', images: '/shared/sim', leaveRunning: false })).rejects.toThrow(/io_uring/);
    const ops = await t.dir.operations(true);
    expect(ops[0]).toMatchObject({ kind: 'checkpoint', state: 'failed', error: { code: ErrorCode.Unsupported } });
    const ps = await t.dir.listing(await t.workloads.list());
    expect(ps.workloads.map((w) => [w.host, w.state])).toEqual([['h1', 'running']]);
  });
});
