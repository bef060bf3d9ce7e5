// `ferry lab up|status|down|kill|start`: the local multi-host lab.
import type { Command } from 'commander';
import { DAEMONS_HELP } from '../../deploy/lab/layout.ts';
import { action } from '../output.ts';
import { collectEnv } from './options.ts';

const impl = () => import('../run/lab.ts');

export function registerLab(program: Command): void {
  const lab = program.command('lab').description('a local multi-host lab: hosts as network namespaces on one machine');

  lab
    .command('up')
    .description('build the lab (fabric, management network, client, nats and host namespaces), issue its identities, start a 3-node nats-server cluster, the coordinator and one agent per host')
    .option('--hosts <n>', 'number of hosts', (v) => Number(v), 3)
    .option('--json', 'print the lab status as JSON')
    .action(action(async (opts: { hosts: number; json?: boolean }) => (await impl()).up(opts)));

  lab
    .command('status')
    .description('show the lab: namespaces, addresses, daemons')
    .option('--json', 'print as JSON')
    .action(action(async (opts: { json?: boolean }) => (await impl()).status(opts)));

  lab
    .command('down')
    .description('remove every namespace, link, process and file the lab made (safe to run twice)')
    .option('--json', 'print as JSON')
    .action(action(async (opts: { json?: boolean }) => (await impl()).down(opts)));

  lab
    .command('kill')
    .argument('<daemon>', DAEMONS_HELP)
    .description('kill a daemon with SIGKILL, as a crash would (for fault-injection tests and demos)')
    .option('--json', 'print as JSON')
    .action(action(async (daemon: string, opts: { json?: boolean }) => (await impl()).kill(daemon, opts)));

  lab
    .command('start')
    .argument('<daemon>', DAEMONS_HELP)
    .description('start a daemon that is not running (after `lab kill` or a crash); a started agent: returns once the coordinator sees it alive')
    .option('--env <KEY=VALUE...>', 'extra environment, e.g. FERRY_FAULT=agent:send:before to arm a crash point', collectEnv, {})
    .option('--no-wait', "return at once, not when the coordinator sees a started agent alive")
    .option('--json', 'print as JSON')
    .action(action(async (daemon: string, opts: { env: Record<string, string>; json?: boolean; wait: boolean }) => (await impl()).start(daemon, opts)));
}
