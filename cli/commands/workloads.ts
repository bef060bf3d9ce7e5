// `ferry run`, `ferry ps`, `ferry stop`: workloads as containers on cluster hosts.
import type { Command } from 'commander';
import { coordinatorApi } from '../../shared/protocol.ts';
import { call } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { action, ExitCode, printResult } from '../output.ts';

const renderOne = (w: WorkloadInfo) => `${w.name} ${w.state} on ${w.host} (pid ${w.rootPid ?? '-'}, ${w.pids.length} processes${w.address ? `, address ${w.address}` : ''})`;

function renderList(ws: WorkloadInfo[]): string {
  if (ws.length === 0) return 'no workloads';
  return table(
    ['NAME', 'HOST', 'STATE', 'PIDS', 'MEMORY', 'ADDRESS', 'COMMAND'],
    ws.map((w) => [w.name, w.host, w.state, w.pids.join(','), bytes(w.memoryBytes), w.address ?? '-', w.command.join(' ')]),
  );
}

function parseEnv(v: string, prev: Record<string, string>): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new Error(`--env takes KEY=VALUE, got "${v}"`);
  return { ...prev, [v.slice(0, i)]: v.slice(i + 1) };
}

export function registerWorkloads(program: Command): void {
  program
    .command('run')
    .description('start a workload as a container (own pid, uts, ipc, time and network namespaces, an address of its own) on a host')
    .requiredOption('--host <host>', 'the host to run it on')
    .requiredOption('--name <name>', 'a cluster-unique name')
    .option('--env <KEY=VALUE>', 'environment variable (repeatable)', parseEnv, {})
    .option('--cwd <dir>', 'working directory')
    .option('--ip <address>', "the workload's IPv4 address (default: the coordinator picks a free one)")
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s) (default: FERRY_NATS_URL or the local lab)')
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(
      action(async (command: string[], opts: { host: string; name: string; env: Record<string, string>; cwd?: string; ip?: string; json?: boolean; nats?: string }) => {
        const w = await withCluster(opts, (nc) =>
          call(nc, subjects.coordinator('run'), coordinatorApi.run, { host: opts.host, name: opts.name, command, env: opts.env, cwd: opts.cwd, address: opts.ip }),
        );
        printResult(!!opts.json, w, renderOne);
      }),
    );

  program
    .command('ps')
    .description('list workloads on every live host (exit code 4 when a live host did not answer or a lost host may still run workloads: the list lacks them)')
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s) (default: FERRY_NATS_URL or the local lab)')
    .action(
      action(async (opts: { json?: boolean; nats?: string }) => {
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
