// A running workload as an agent reports it, for unit tests that fake the agents.
import type { WorkloadInfo } from '../../shared/workload.ts';

export const runningWorkload = (name: string, host: string, address: string | null, command: string[] = ['sleep', 'inf']): WorkloadInfo => ({
  name,
  host,
  state: 'running',
  rootPid: 100,
  pids: [100],
  memoryBytes: 1 << 20,
  command,
  startedAt: '2026-11-22T00:00:00.000Z',
  address,
  cgroup: null,
  log: '/dev/null',
  limits: {},
  requests: {},
  usage: {},
});
