// A job's cut (coordinator/job-checkpoints.ts) against fake agents: every member is frozen before
// any is dumped, the manifest is written only once every member is staged, and no member is
// committed (made current, or ended) before it; a failure at any step before the manifest leaves
// every member thawed and nothing committed. A restore is all or none.
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../../coordinator/agents.ts';
import { CheckpointDirectory } from '../../coordinator/checkpoints.ts';
import type { ClusterView } from '../../coordinator/cluster.ts';
import { RecordBucket } from '../../coordinator/fleet/bucket.ts';
import { JobCheckpoints } from '../../coordinator/job-checkpoints.ts';
import type { MigrationManager } from '../../coordinator/migrations.ts';
import { RecordQuarantine } from '../../coordinator/quarantine.ts';
import { WorkloadDirectory } from '../../coordinator/workloads.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { PlacementPolicy } from '../../shared/fleet.ts';
import type { JobImagesManifest, JobMemberStep } from '../../shared/job-group.ts';
import { CheckpointRecord } from '../../shared/job-image.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { FakeKv } from './fake-kv.ts';
import { runningWorkload } from './workload-info.ts';

/** Members a (h1), b (h2), c (h3) of job j; `failAt`: `<member>:<step>` fails there. */
async function setup(failAt?: string) {
  const hosts = ['h1', 'h2', 'h3', 'h4'].map((name, i) => ({ name, alive: true, cordoned: false, facts: { address: `10.77.0.1${i + 1}` } }));
  const cluster = { hosts: () => hosts, lastClaims: () => ({ claims: [], seenMono: performance.now() }), isCordoned: () => false } as unknown as ClusterView;
  const running: WorkloadInfo[] = [runningWorkload('a', 'h1', '10.77.1.1', ['x']), runningWorkload('b', 'h2', '10.77.1.2', ['x']), runningWorkload('c', 'h3', '10.77.1.3', ['x'])];
  const calls: string[] = [];
  const frozen = new Set<string>();
  let manifest: JobImagesManifest | null = null;
  const agents = {
    call: async (host: string, endpoint: string, req: JobMemberStep & { images?: string; manifest?: JobImagesManifest }) => {
      if (endpoint === 'workloads') return running.filter((w) => w.host === host);
      // c is the slowest at every step: without the barrier, a and b would go ahead of it.
      await new Promise((r) => setTimeout(r, req.name === 'c' ? 20 : 1));
      if (endpoint === 'job.manifest-write') {
        calls.push('manifest');
        manifest = req.manifest!;
        return { path: `${req.images}/job.json` };
      }
      if (endpoint === 'job.manifest-read') return manifest;
      if (endpoint === 'stop') {
        calls.push(`stop:${req.name}`);
        running.splice(running.findIndex((w) => w.name === req.name), 1);
        return running[0];
      }
      if (endpoint === 'job.restore') {
        calls.push(`restore:${req.name}@${host}`);
        if (failAt === `${req.name}:restore`) throw new FerryError(ErrorCode.Incompatible, `${req.name} cannot come back here`);
        running.push(runningWorkload(req.name, host, '10.77.1.9', ['x']));
        return { workload: req.name, host, images: req.images, snapshot: `${req.images}/ckpt-000001`, seq: 1, pid: 9, address: '10.77.1.9', processes: 1, totalMs: 3 };
      }
      calls.push(`${req.step}:${req.name}`);
      if (failAt === `${req.name}:${req.step}`) throw new FerryError(ErrorCode.Unsupported, `${req.name}: something it holds cannot be carried`);
      if (req.step === 'freeze') frozen.add(req.name);
      if (req.step === 'abort') frozen.delete(req.name);
      if (req.step === 'commit') {
        frozen.delete(req.name);
        const w = running.find((x) => x.name === req.name)!;
        running.splice(running.indexOf(w), 1);
        const reply = { workload: req.name, host, images: `/shared/j/${req.name}`, snapshot: `/shared/j/${req.name}/ckpt-000002`, seq: 2, processes: 1, threads: 1, pagesBytes: 4096, bytesWritten: 4096, incremental: false, frozenMs: 5, totalMs: 9, leftRunning: false, command: w.command, address: w.address };
        return { name: req.name, step: req.step, frozen: false, seq: 2, reply };
      }
      return { name: req.name, step: req.step, frozen: frozen.has(req.name), seq: req.step === 'dump' ? 2 : null, reply: null };
    },
  } as unknown as AgentClient;
  const workloads = new WorkloadDirectory(cluster, agents, { pool: null, findRetryMs: 0 });
  const quarantine = new RecordQuarantine({ publish: () => undefined } as unknown as NatsConnection, new FakeKv('q') as unknown as KV, pino({ level: 'silent' }), 'test');
  const kv = new FakeKv('ferry_checkpoints');
  const records = new RecordBucket('ferry_checkpoints', kv as unknown as KV, CheckpointRecord, quarantine, () => true, kv.listKeys);
  const pkv = new FakeKv('ferry_policies');
  const policies = new RecordBucket('ferry_policies', pkv as unknown as KV, PlacementPolicy, quarantine, () => true, pkv.listKeys);
  for (const n of ['a', 'b', 'c']) await policies.put(n, { group: null, spread: false, pinned: false, job: 'j' });
  const dir = new CheckpointDirectory(records, workloads, { migrating: () => false } as unknown as MigrationManager, cluster, agents);
  const jobs = new JobCheckpoints(policies, workloads, dir, agents, cluster);
  return { jobs, dir, workloads, calls, frozen, running };
}

const at = (calls: string[], prefix: string) => calls.map((c, i) => (c.startsWith(prefix) ? i : -1)).filter((i) => i >= 0);

describe('a job checkpoint: one cut across hosts', () => {
  it('freezes every member before any dump, writes the manifest once all are staged, and commits after it', async () => {
    const t = await setup();
    const r = await t.jobs.checkpoint({ job: 'j', images: '/shared/j', leaveRunning: false });
    expect(r.members.map((m) => m.workload)).toEqual(['a', 'b', 'c']);
    expect(Math.max(...at(t.calls, 'freeze:'))).toBeLessThan(Math.min(...at(t.calls, 'dump:')));
    expect(Math.max(...at(t.calls, 'dump:'))).toBeLessThan(t.calls.indexOf('manifest'));
    expect(t.calls.indexOf('manifest')).toBeLessThan(Math.min(...at(t.calls, 'commit:')));
    expect(at(t.calls, 'commit:')).toHaveLength(3);
    // Each member's own operation is recorded, and ps lists them checkpointed with their job.
    const ps = await t.jobs.annotate(await t.dir.listing(await t.workloads.list()));
    expect(ps.workloads.map((w) => [w.name, w.state, w.job])).toEqual([
      ['a', 'checkpointed', 'j'],
      ['b', 'checkpointed', 'j'],
      ['c', 'checkpointed', 'j'],
    ]);
  });

  for (const step of ['freeze', 'dump'] as const)
    it(`a member failing at ${step} leaves every member thawed and running, nothing committed, and says which`, async () => {
      const t = await setup(`b:${step}`);
      const err = (await t.jobs.checkpoint({ job: 'j', images: '/shared/j', leaveRunning: false }).catch((e: unknown) => e)) as FerryError;
      expect(err).toBeInstanceOf(FerryError);
      expect(err.code).toBe(ErrorCode.Unsupported);
      expect(err.message).toMatch(/job j: not checkpointed.*b: .*b: something it holds cannot be carried/);
      expect([...t.frozen]).toEqual([]);
      expect(t.calls).not.toContain('manifest');
      expect(at(t.calls, 'commit:')).toEqual([]);
      if (step === 'dump') expect(at(t.calls, 'dump:').length).toBeGreaterThan(0);
      else expect(at(t.calls, 'dump:')).toEqual([]);
      expect(t.running.map((w) => w.name).sort()).toEqual(['a', 'b', 'c']);
    });

  it('refuses before anything is frozen when a member does not run', async () => {
    const t = await setup();
    t.running.splice(1, 1);
    const err = (await t.jobs.checkpoint({ job: 'j', images: '/shared/j', leaveRunning: true }).catch((e: unknown) => e)) as FerryError;
    expect(err.code).toBe(ErrorCode.InvalidRequest);
    expect(err.message).toMatch(/b is not running anywhere/);
    expect(t.calls).toEqual([]);
  });

  it('restores every member on the hosts asked for; a member that cannot come back takes the others down again', async () => {
    const t = await setup();
    await t.jobs.checkpoint({ job: 'j', images: '/shared/j', leaveRunning: false });
    const r = await t.jobs.restore({ job: 'j', images: '/shared/j', hosts: ['h4', 'h1'] });
    expect(r.members.map((m) => [m.workload, m.host])).toEqual([
      ['a', 'h4'],
      ['b', 'h1'],
      ['c', 'h4'],
    ]);
    const again = await setup('c:restore');
    await again.jobs.checkpoint({ job: 'j', images: '/shared/j', leaveRunning: false });
    const err = (await again.jobs.restore({ job: 'j', images: '/shared/j', hosts: ['h2'] }).catch((e: unknown) => e)) as FerryError;
    expect(err.message).toMatch(/job j not restored: c: c cannot come back here \(a, b stopped again\)/);
    expect(again.running).toEqual([]);
  });
});
