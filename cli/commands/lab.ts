// `ferry lab up|status|down`: the local multi-host lab.
import type { Command } from 'commander';
import { DAEMONS_HELP, labKill, labStart } from '../../deploy/lab/daemons.ts';
import { labDown, labStatus, labUp, type LabStatus } from '../../deploy/lab/lab.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { waitForLab } from '../cluster.ts';
import { table } from '../format.ts';
import { action, printResult } from '../output.ts';

function renderStatus(s: LabStatus): string {
  if (!s.up) return `lab "${s.name}" is down`;
  const mark = (running: boolean) => (running ? 'running' : 'STOPPED');
  return [
    `lab "${s.name}" is up (state in ${s.dir})`,
    ...s.natsServers.map((n) => `  ${n.name.padEnd(12)}  ${n.url}  ${mark(n.running)}  pid ${n.pid}  (namespace ${n.namespace})`),
    `  coordinator   ${mark(s.coordinator.running)}  pid ${s.coordinator.pid}  (namespace ${s.switchNamespace})`,
    ...(s.coordinator2 ? [`  coordinator2  ${mark(s.coordinator2.running)}  pid ${s.coordinator2.pid}`] : []),
    `  client        namespace ${s.clientNamespace}`,
    '',
    table(
      ['HOST', 'NAMESPACE', 'ADDRESS', 'FABRIC ADDRESS', 'AGENT'],
      s.hosts.map((h) => [h.name, h.namespace, h.address, h.fabricAddress, `${mark(h.agent.running)} (pid ${h.agent.pid})`]),
    ),
  ].join('\n');
}

export function registerLab(program: Command): void {
  const lab = program.command('lab').description('a local multi-host lab: hosts as network namespaces on one machine');

  lab
    .command('up')
    .description('build the lab (fabric, management network, client, nats and host namespaces), issue its identities, start a 3-node nats-server cluster, the coordinator and one agent per host')
    .option('--hosts <n>', 'number of hosts', (v) => Number(v), 3)
    .option('--json', 'print the lab status as JSON')
    .action(
      action(async (opts: { hosts: number; json?: boolean }) => {
        const status = await labUp({
          hosts: opts.hosts,
          waitReady: waitForLab,
          onProgress: opts.json ? undefined : (m) => process.stderr.write(`lab: ${m}\n`),
        });
        printResult(!!opts.json, status, renderStatus);
      }),
    );

  lab
    .command('status')
    .description('show the lab: namespaces, addresses, daemons')
    .option('--json', 'print as JSON')
    .action(action(async (opts: { json?: boolean }) => printResult(!!opts.json, await labStatus(), renderStatus)));

  lab
    .command('down')
    .description('remove every namespace, link, process and file the lab made (safe to run twice)')
    .option('--json', 'print as JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        const r = await labDown();
        printResult(!!opts.json, r, (v) =>
          v.removedNamespaces.length || v.stoppedProcesses
            ? `lab "${v.name}" removed: ${v.stoppedProcesses} processes stopped, namespaces ${v.removedNamespaces.join(', ') || 'none'}`
            : `lab "${v.name}" was not up; nothing to remove`,
        );
      }),
    );

  lab
    .command('kill')
    .argument('<daemon>', DAEMONS_HELP)
    .description('kill a daemon with SIGKILL, as a crash would (for fault-injection tests and demos)')
    .option('--json', 'print as JSON')
    .action(
      action(async (daemon: string, opts: { json?: boolean }) => {
        const r = await labKill(daemon);
        printResult(!!opts.json, r, (v) => (v.pid === null ? `${v.daemon} was not running` : `${v.daemon} (pid ${v.pid}) killed`));
      }),
    );

  lab
    .command('start')
    .argument('<daemon>', DAEMONS_HELP)
    .description('start a daemon that is not running (after `lab kill` or a crash)')
    .option('--env <KEY=VALUE...>', 'extra environment, e.g. FERRY_FAULT=agent:send:before to arm a crash point', collectEnv, {})
    .option('--json', 'print as JSON')
    .action(
      action(async (daemon: string, opts: { env: Record<string, string>; json?: boolean }) => {
        const r = labStart(daemon, opts.env);
        printResult(!!opts.json, r, (v) => `${v.daemon} started (pid ${v.pid})`);
      }),
    );
}

function collectEnv(v: string, acc: Record<string, string>): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new FerryError(ErrorCode.InvalidRequest, `--env takes KEY=VALUE, got "${v}"`);
  return { ...acc, [v.slice(0, i)]: v.slice(i + 1) };
}
