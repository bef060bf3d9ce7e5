// The coordinator's workload directory when a live host does not answer: the listing says which
// host is missing instead of dropping its workloads, and decisions that need the whole cluster
// (unique names and addresses, finding a workload) refuse rather than guess. The agents are faked.
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../../coordinator/agents.ts';
import type { ClusterView } from '../../coordinator/cluster.ts';
import { WorkloadDirectory } from '../../coordinator/workloads.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { AddressPool, WorkloadSubnet } from '../../shared/subnet.ts';
import type { WorkloadClaim } from '../../shared/workload.ts';
import { runningWorkload } from './workload-info.ts';


const pool = new AddressPool(WorkloadSubnet.parse({ subnet: '10.77.0.0/16', first: '10.77.1.1', reserved: ['10.77.0.2'] }));
const host = (name: string, alive: boolean, i: number) => ({ name, alive, facts: { address: `10.77.0.${10 + i}` } });

/** h1 runs "a"; h2 is alive but its agent times out; h3 is lost (and said it held nothing). */
function directory(): { dir: WorkloadDirectory; runs: string[] } {
  const runs: string[] = [];
  const cluster = {
    hosts: () => [host('h1', true, 1), host('h2', true, 2), host('h3', false, 3)],
    lastClaims: () => ({ claims: [], seenMono: 0 }),
    isCordoned: () => false,
  } as unknown as ClusterView;
  const agents = {
    call: (host: string, endpoint: string, req: { name?: string }) => {
      if (host === 'h2') return Promise.reject(new FerryError(ErrorCode.Timeout, 'no reply within 5000 ms'));
      if (endpoint === 'workloads') return Promise.resolve([runningWorkload('a', host, '10.77.1.1')]);
      runs.push(`${host}:${req.name}`);
      return Promise.resolve(runningWorkload(req.name ?? '?', host, '10.77.1.2'));
    },
  } as unknown as AgentClient;
  return { dir: new WorkloadDirectory(cluster, agents, { pool, findRetryMs: 0 }), runs };
}

describe('workload directory with a live host that does not answer', () => {
  it('lists what answered and names the host that did not', async () => {
    const { dir } = directory();
    const listing = await dir.list();
    expect(listing.workloads.map((w) => `${w.name}@${w.host}`)).toEqual(['a@h1']);
    expect(listing.unanswered).toEqual([{ host: 'h2', error: 'no reply within 5000 ms' }]);
  });

  it('finds a workload on a host that answered', async () => {
    expect((await directory().dir.find('a')).host).toBe('h1');
  });

  it('does not call a workload missing when its host may be the one that did not answer', async () => {
    await expect(directory().dir.find('b')).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/h2 did not answer/) });
  });

  it('refuses to start a workload while it cannot check that name and address are unique', async () => {
    const { dir, runs } = directory();
    await expect(dir.run('h1', { name: 'b', command: ['sleep', 'inf'], env: {}, limits: {}, requests: {} })).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
      message: expect.stringMatching(/unique.*h2/),
    });
    expect(runs).toEqual([]);
  });
});

/**
 * h1 (alive, answers) runs "a" at 10.77.1.1; h3 is lost; its last heartbeat, at t=1000, said it
 * held `h3Claims` (null: never heard). The clock moves 10 ms at each reading.
 */
function withLostHost(h3Claims: WorkloadClaim[] | null) {
  let t = 5_000;
  const runs: string[] = [];
  const ran = [runningWorkload('a', 'h1', '10.77.1.1')];
  let h3: 'lost' | 'alive' | 'silent' = 'lost';
  const cluster = {
    hosts: () => [host('h1', true, 1), host('h3', h3 !== 'lost', 3)],
    lastClaims: (h: string) => (h === 'h3' && h3Claims ? { claims: h3Claims, seenMono: 1_000 } : h === 'h1' ? { claims: [], seenMono: t } : null),
    isCordoned: () => false,
  } as unknown as ClusterView;
  const agents = {
    call: (h: string, endpoint: string, req: { name?: string; address?: string }) => {
      if (endpoint === 'workloads') return Promise.resolve(ran.filter((w) => w.host === h));
      runs.push(`${h}:${req.name}@${req.address}`);
      ran.push(runningWorkload(req.name ?? '?', h, req.address ?? ''));
      if (h === 'h3' && h3 === 'silent') return Promise.reject(new FerryError(ErrorCode.Timeout, 'no reply within 15000 ms'));
      return Promise.resolve(ran.at(-1));
    },
  } as unknown as AgentClient;
  const dir = new WorkloadDirectory(cluster, agents, { pool, natsServers: ['nats://10.77.0.1:4222'], now: () => (t += 10) });
  return { dir, runs, setH3: (v: typeof h3) => (h3 = v) };
}

const req = (name: string, address?: string) => ({ name, command: ['sleep', 'inf'], env: {}, limits: {}, requests: {}, ...(address ? { address } : {}) });

describe('workload addresses come from the workload subnet only', () => {
  it('refuses infrastructure addresses and addresses outside the subnet (invalid request: exit 2)', async () => {
    const { dir, runs } = withLostHost([]);
    for (const [ip, why] of [
      ['10.77.0.1', /NATS server/],
      ['10.77.0.11', /host h1's address/],
      ['10.77.0.2', /reserved/],
      ['192.168.5.5', /outside the workload subnet/],
      ['10.77.0.99', /outside the workload range/],
      ['10.77.255.255', /broadcast/],
    ] as const) {
      await expect(dir.run('h1', req('x', ip)), ip).rejects.toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringMatching(why) });
    }
    expect(runs).toEqual([]);
    await dir.run('h1', req('x', '10.77.9.9'));
    expect(runs).toEqual(['h1:x@10.77.9.9']);
  });

  it('refuses --ip when the cluster has no workload subnet', async () => {
    const cluster = { hosts: () => [host('h1', true, 1)], lastClaims: () => null, isCordoned: () => false } as unknown as ClusterView;
    const dir = new WorkloadDirectory(cluster, { call: () => Promise.resolve([]) } as unknown as AgentClient, { pool: null });
    await expect(dir.run('h1', req('x', '10.77.9.9'))).rejects.toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringMatching(/no workload subnet/) });
  });
});

describe('a lost host keeps its names and addresses', () => {
  it('refuses a name or address its last heartbeat claimed (unavailable: exit 4) and allocates around them', async () => {
    const { dir, runs } = withLostHost([{ name: 'loop', address: '10.77.1.2' }]);
    await expect(dir.run('h1', req('loop'))).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/"loop" may still be in use on host h3, which is lost/) });
    await expect(dir.run('h1', req('other', '10.77.1.2'))).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/10\.77\.1\.2 may still be in use by "loop" on host h3/) });
    await dir.run('h1', req('other'));
    expect(runs).toEqual(['h1:other@10.77.1.3']);
    expect((await dir.list()).lost).toEqual([{ host: 'h3', workloads: [{ name: 'loop', address: '10.77.1.2' }] }]);
  });

  it('keeps what it handed to the host after its last heartbeat, and what a run whose answer was lost may hold', async () => {
    const { dir, runs, setH3 } = withLostHost([]);
    setH3('alive');
    await dir.run('h3', req('fresh'));
    setH3('silent');
    await expect(dir.run('h3', req('maybe'))).rejects.toMatchObject({ code: ErrorCode.Timeout });
    // h3 is lost before any heartbeat said it holds either.
    setH3('lost');
    expect((await dir.list()).lost).toEqual([{ host: 'h3', workloads: [{ name: 'fresh', address: '10.77.1.2' }, { name: 'maybe', address: '10.77.1.3' }] }]);
    await expect(dir.run('h1', req('fresh'))).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await expect(dir.run('h1', req('maybe'))).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await dir.run('h1', req('third'));
    expect(runs).toEqual(['h3:fresh@10.77.1.2', 'h3:maybe@10.77.1.3', 'h1:third@10.77.1.4']);
  });

  it('refuses every run while a lost host was never heard from: nothing is known of what it holds', async () => {
    const { dir, runs } = withLostHost(null);
    await expect(dir.run('h1', req('new'))).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/h3 is lost and this coordinator has not heard/) });
    expect(runs).toEqual([]);
  });
});
