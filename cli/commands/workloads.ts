// `ferry run`, `ferry ps`, `ferry stop`: workloads as containers on cluster hosts.
import type { Command } from 'commander';
import { action } from '../output.ts';
import { limitOptions, parseRequestsOption } from '../limits.ts';
import { collectEnv, natsOpt } from './options.ts';

const impl = () => import('../run/workloads.ts');

export function registerWorkloads(program: Command): void {
  limitOptions(program
    .command('run'))
    .description('start a workload as a container (own pid, uts, ipc, time and network namespaces, an address of its own) on a host')
    .option('--host <host>', 'the host to run it on (default: placement picks one: free memory against requests, CPU load, workload count)')
    .option('--group <group>', 'a group of workloads (with --spread: on different hosts)')
    .option('--spread', "never on the same host as another --spread workload of its --group (drain and rebalance honour it)")
    .option('--pinned', 'never moved automatically: drain leaves it (named), rebalance does not touch it')
    .option('--job <job>', 'a job it belongs to: `ferry checkpoint|restore|migrate --job` take all its workloads together (docs/hpc.md)')
    .requiredOption('--name <name>', 'a cluster-unique name')
    .option('--env <KEY=VALUE>', 'environment variable (repeatable)', collectEnv, {})
    .option('--cwd <dir>', 'working directory')
    .option('--ip <address>', "the workload's IPv4 address, inside the cluster's workload subnet and not an infrastructure address (default: the coordinator picks a free one)")
    .option('--requests <memory=..,cpu=..>', 'what placement reserves for it (e.g. memory=1G,cpu=0.5)', parseRequestsOption)
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(action(async (command: string[], opts: Parameters<Awaited<ReturnType<typeof impl>>['run']>[1]) => (await impl()).run(command, opts)));

  program
    .command('ps')
    .description('list workloads on every live host (exit code 4 when a live host did not answer or a lost host may still run workloads: the list lacks them)')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (opts: { json?: boolean; nats?: string }) => (await impl()).ps(opts)));

  limitOptions(program
    .command('update'))
    .description("change a running workload's limits, wherever it runs (those not given stay as they are)")
    .argument('<name>', 'workload name')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (name: string, opts: Parameters<Awaited<ReturnType<typeof impl>>['update']>[1]) => (await impl()).update(name, opts)));

  program
    .command('stop')
    .description('end a workload (all its processes) and forget it; an exited one is forgotten')
    .argument('<name>', 'workload name')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (name: string, opts: { json?: boolean; nats?: string }) => (await impl()).stop(name, opts)));
}
