// `ferry run`, `ferry ps`, `ferry stop`: workloads as containers on cluster hosts.
import type { Command } from 'commander';
import { coordinatorApi } from '../../shared/protocol.ts';
import { call } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { ResourceRequests } from '../../shared/resources.ts';
import { withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { action, ExitCode, printResult } from '../output.ts';
import { type LimitOptions, limitOptions, limitsFrom, parseRequestsOption, renderResources } from '../limits.ts';

const renderOne = (w: WorkloadInfo) => `${w.name} ${w.state} on ${w.host} (pid ${w.rootPid ?? '-'}, ${w.pids.length} processes${w.address ? `, address ${w.address}` : ''})`;

function renderList(ws: WorkloadInfo[]): string {
  if (ws.length === 0) return 'no workloads';
  return table(
    ['NAME', 'HOST', 'STATE', 'PIDS', 'MEMORY', 'ADDRESS', 'LIMITS (USAGE/LIMIT)', 'COMMAND'],
    ws.map((w) => [w.name, w.host, w.state, w.pids.join(','), bytes(w.memoryBytes), w.address ?? '-', renderResources(w), w.command.join(' ')]),
  );
}

function parseEnv(v: string, prev: Record<string, string>): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new Error(`--env takes KEY=VALUE, got "${v}"`);
  return { ...prev, [v.slice(0, i)]: v.slice(i + 1) };
}

export function registerWorkloads(program: Command): void {
  limitOptions(program
    .command('run'))
    .description('start a workload as a container (own pid, uts, ipc, time and network namespaces, an address of its own) on a host')
    .requiredOption('--host <host>', 'the host to run it on')
    .requiredOption('--name <name>', 'a cluster-unique name')
    .option('--env <KEY=VALUE>', 'environment variable (repeatable)', parseEnv, {})
    .option('--cwd <dir>', 'working directory')
    .option('--ip <address>', "the workload's IPv4 address (default: the coordinator picks a free one)")
    .option('--requests <memory=..,cpu=..>', 'what placement reserves for it (e.g. memory=1G,cpu=0.5)', parseRequestsOption)
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s) (default: FERRY_NATS_URL or the local lab)')
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(
      action(async (command: string[], opts: LimitOptions & { host: string; name: string; env: Record<string, string>; cwd?: string; ip?: string; requests?: ResourceRequests; json?: boolean; nats?: string }) => {
        const resources = { limits: limitsFrom(opts), requests: opts.requests ?? {} };
        const w = await withCluster(opts, (nc) =>
          call(nc, subjects.coordinator('run'), coordinatorApi.run, { host: opts.host, name: opts.name, command, env: opts.env, cwd: opts.cwd, address: opts.ip, ...resources }),
        );
        printResult(!!opts.json, w, renderOne);
      }),
    );

  program
    .command('ps')
    .description('list workloads on every live host (exit code 4 when a live host did not answer: the list lacks its workloads)')
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s) (default: FERRY_NATS_URL or the local lab)')
    .action(
      action(async (opts: { json?: boolean; nats?: string }) => {
        const { workloads, unanswered } = await withCluster(opts, (nc) => call(nc, subjects.coordinator('ps'), coordinatorApi.ps, {}));
        printResult(!!opts.json, workloads, renderList);
        // The list stays what scripts parse; a partial one says so on stderr and in the exit code.
        for (const u of unanswered) process.stderr.write(`ferry: host ${u.host} did not answer, its workloads are missing: ${u.error}\n`);
        if (unanswered.length > 0) process.exitCode = ExitCode.Unavailable;
      }),
    );

  limitOptions(program
    .command('update'))
    .description("change a running workload's limits, wherever it runs (those not given stay as they are)")
    .argument('<name>', 'workload name')
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s) (default: FERRY_NATS_URL or the local lab)')
    .action(
      action(async (name: string, opts: LimitOptions & { json?: boolean; nats?: string }) => {
        const limits = limitsFrom(opts);
        if (Object.keys(limits).length === 0) throw new FerryError(ErrorCode.InvalidRequest, 'ferry update: give at least one limit (--memory, --cpus, ...)');
        const w = await withCluster(opts, (nc) => call(nc, subjects.coordinator('update'), coordinatorApi.update, { name, limits }));
        printResult(!!opts.json, w, (x) => `${x.name} on ${x.host}: ${renderResources(x)}`);
      }),
    );

  program
    .command('stop')
    .description('end a workload (all its processes) and forget it')
    .argument('<name>', 'workload name')
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s) (default: FERRY_NATS_URL or the local lab)')
    .action(
      action(async (name: string, opts: { json?: boolean; nats?: string }) => {
        const w = await withCluster(opts, (nc) => call(nc, subjects.coordinator('stop'), coordinatorApi.stop, { name }));
        printResult(!!opts.json, w, (x) => `${x.name} stopped on ${x.host}`);
      }),
    );
}
