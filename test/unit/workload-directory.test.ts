// The coordinator's workload directory when a live host does not answer: the listing says which
// host is missing instead of dropping its workloads, and decisions that need the whole cluster
// (unique names and addresses, finding a workload) refuse rather than guess. The agents are faked.
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../../coordinator/agents.ts';
import type { ClusterView } from '../../coordinator/cluster.ts';
import { WorkloadDirectory } from '../../coordinator/workloads.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';

const workload = (name: string, host: string, address: string): WorkloadInfo => ({
  name,
  host,
  state: 'running',
  rootPid: 100,
  pids: [100],
  memoryBytes: 1 << 20,
  command: ['sleep', 'inf'],
  startedAt: '2026-11-22T00:00:00.000Z',
  address,
  cgroup: null,
  log: '/dev/null',
  limits: {},
  requests: {},
  usage: {},
});

/** h1 runs "a"; h2 is alive but its agent times out. */
function directory(): { dir: WorkloadDirectory; runs: string[] } {
  const runs: string[] = [];
  const cluster = { hosts: () => [{ name: 'h1', alive: true }, { name: 'h2', alive: true }, { name: 'h3', alive: false }] } as unknown as ClusterView;
  const agents = {
    call: (host: string, endpoint: string, req: { name?: string }) => {
      if (host === 'h2') return Promise.reject(new FerryError(ErrorCode.Timeout, 'no reply within 5000 ms'));
      if (endpoint === 'workloads') return Promise.resolve([workload('a', host, '10.77.1.1')]);
      runs.push(`${host}:${req.name}`);
      return Promise.resolve(workload(req.name ?? '?', host, '10.77.1.2'));
    },
  } as unknown as AgentClient;
  return { dir: new WorkloadDirectory(cluster, agents), runs };
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
