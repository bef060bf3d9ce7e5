// Whether this host can take a workload's requests beside the requests of the workloads it
// already runs: the sum of memory requests stays within the host's memory, the sum of CPU
// requests within its CPUs. Limits are the cgroup's business; requests are promises.
import os from 'node:os';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { ResourceRequests } from '../../shared/resources.ts';

export interface Capacity {
  memoryBytes: number;
  cpus: number;
}

export const hostCapacity = (): Capacity => ({ memoryBytes: os.totalmem(), cpus: os.availableParallelism() });

const gib = (n: number) => `${(n / 1024 ** 3).toFixed(2)} GiB`;

/** What does not fit, one readable line each; empty when the requests fit. */
export function requestsMisfit(want: ResourceRequests, others: readonly ResourceRequests[], cap: Capacity): string[] {
  const out: string[] = [];
  const mem = others.reduce((n, r) => n + (r.memoryBytes ?? 0), 0);
  const cpu = others.reduce((n, r) => n + (r.cpus ?? 0), 0);
  if (want.memoryBytes && mem + want.memoryBytes > cap.memoryBytes)
    out.push(`memory request ${gib(want.memoryBytes)} does not fit: ${gib(mem)} of ${gib(cap.memoryBytes)} is requested by other workloads`);
  if (want.cpus && cpu + want.cpus > cap.cpus + 1e-9) out.push(`cpu request ${want.cpus} does not fit: ${cpu} of ${cap.cpus} CPUs are requested by other workloads`);
  return out;
}

export function assertRequestsFit(host: string, name: string, want: ResourceRequests, others: readonly ResourceRequests[], cap: Capacity): void {
  const problems = requestsMisfit(want, others, cap);
  if (problems.length) throw new FerryError(ErrorCode.Incompatible, `${host} cannot take "${name}": ${problems.join('; ')}`, { details: { problems } });
}
