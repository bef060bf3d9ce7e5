// `ferry run`, `ps`, `stop`, loaded when they run (cli/commands/workloads.ts defines them).
import type { WorkloadInfo } from '../../shared/workload.ts';
import { askCoordinator, withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { ResourceRequests } from '../../shared/resources.ts';
import { type LimitOptions, limitsFrom, renderResources } from '../limits.ts';
import { ExitCode, printResult } from '../output.ts';

const renderOne = (w: WorkloadInfo) => `${w.name} ${w.state} ${w.state === 'checkpointed' ? `in ${w.images ?? '?'}, last on` : 'on'} ${w.host} (pid ${w.rootPid ?? '-'}, ${w.pids.length} processes${w.address ? `, address ${w.address}` : ''})`;

function renderList(ws: WorkloadInfo[]): string {
  if (ws.length === 0) return 'no workloads';
  return table(
    ['NAME', 'HOST', 'STATE', 'PIDS', 'MEMORY', 'ADDRESS', 'LIMITS (USAGE/LIMIT)', 'COMMAND'],
    ws.map((w) => [w.name, w.state === 'checkpointed' ? `(${w.host})` : w.host, w.state === 'checkpointed' ? `checkpointed in ${w.images ?? '?'}` : w.state, w.pids.join(','), bytes(w.memoryBytes), w.address ?? '-', renderResources(w), w.command.join(' ')]),
  );
}

export async function run(
  command: string[],
  opts: LimitOptions & { host?: string; group?: string; spread?: boolean; pinned?: boolean; job?: string; name: string; env: Record<string, string>; cwd?: string; ip?: string; requests?: ResourceRequests; json?: boolean; nats?: string },
): Promise<void> {
  if (opts.spread && !opts.group) throw new FerryError(ErrorCode.InvalidRequest, '--spread needs --group');
  const resources = { limits: limitsFrom(opts), requests: opts.requests ?? {} };
  const w = await withCluster(opts, (nc) =>
    askCoordinator(nc, 'run', {
      host: opts.host,
      name: opts.name,
      command,
      env: opts.env,
      cwd: opts.cwd,
      address: opts.ip,
      ...resources,
      policy: { group: opts.group ?? null, spread: !!opts.spread, pinned: !!opts.pinned, job: opts.job ?? null },
    }),
  );
  printResult(!!opts.json, w, renderOne);
}

export async function ps(opts: { json?: boolean; nats?: string }): Promise<void> {
  const { workloads, unanswered, lost } = await withCluster(opts, (nc) => askCoordinator(nc, 'ps', {}));
  printResult(!!opts.json, workloads, renderList);
  // The list stays what scripts parse; a partial one says so on stderr and in the exit code.
  for (const u of unanswered) process.stderr.write(`ferry: host ${u.host} did not answer, its workloads are missing: ${u.error}\n`);
  const holding = lost.filter((l) => l.workloads === null || l.workloads.length > 0);
  for (const l of holding) {
    const what = l.workloads === null ? 'unknown workloads' : l.workloads.map((c) => `${c.name}${c.address ? ` (${c.address})` : ''}`).join(', ');
    process.stderr.write(`ferry: host ${l.host} is lost; it may still run ${what}, missing from this list\n`);
  }
  if (unanswered.length > 0 || holding.length > 0) process.exitCode = ExitCode.Unavailable;
}

export async function stop(name: string, opts: { json?: boolean; nats?: string }): Promise<void> {
  const w = await withCluster(opts, (nc) => askCoordinator(nc, 'stop', { name }));
  printResult(!!opts.json, w, (x) => `${x.name} ${x.state === 'exited' ? 'stopped' : x.state} on ${x.host}`);
}

export async function update(name: string, opts: LimitOptions & { json?: boolean; nats?: string }): Promise<void> {
  const limits = limitsFrom(opts);
  if (Object.keys(limits).length === 0) throw new FerryError(ErrorCode.InvalidRequest, 'ferry update: give at least one limit (--memory, --cpus, ...)');
  const w = await withCluster(opts, (nc) => askCoordinator(nc, 'update', { name, limits }));
  printResult(!!opts.json, w, (x) => `${x.name} on ${x.host}: ${renderResources(x)}`);
}
