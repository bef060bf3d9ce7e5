// `ferry run`, `ps`, `stop`, loaded when they run (cli/commands/workloads.ts defines them).
import { coordinatorApi } from '../../shared/protocol.ts';
import { call } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { ExitCode, printResult } from '../output.ts';

const renderOne = (w: WorkloadInfo) => `${w.name} ${w.state} on ${w.host} (pid ${w.rootPid ?? '-'}, ${w.pids.length} processes${w.address ? `, address ${w.address}` : ''})`;

function renderList(ws: WorkloadInfo[]): string {
  if (ws.length === 0) return 'no workloads';
  return table(
    ['NAME', 'HOST', 'STATE', 'PIDS', 'MEMORY', 'ADDRESS', 'COMMAND'],
    ws.map((w) => [w.name, w.host, w.state, w.pids.join(','), bytes(w.memoryBytes), w.address ?? '-', w.command.join(' ')]),
  );
}

export async function run(command: string[], opts: { host: string; name: string; env: Record<string, string>; cwd?: string; ip?: string; json?: boolean; nats?: string }): Promise<void> {
  const w = await withCluster(opts, (nc) =>
    call(nc, subjects.coordinator('run'), coordinatorApi.run, { host: opts.host, name: opts.name, command, env: opts.env, cwd: opts.cwd, address: opts.ip }),
  );
  printResult(!!opts.json, w, renderOne);
}

export async function ps(opts: { json?: boolean; nats?: string }): Promise<void> {
  const { workloads, unanswered, lost } = await withCluster(opts, (nc) => call(nc, subjects.coordinator('ps'), coordinatorApi.ps, {}));
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
  const w = await withCluster(opts, (nc) => call(nc, subjects.coordinator('stop'), coordinatorApi.stop, { name }));
  printResult(!!opts.json, w, (x) => `${x.name} ${x.state === 'exited' ? 'stopped' : x.state} on ${x.host}`);
}
