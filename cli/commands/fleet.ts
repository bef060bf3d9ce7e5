// `ferry cordon|uncordon|drain|rebalance|drains`: operations on hosts rather than on workloads.
import { type Command, Option } from 'commander';
import { action } from '../output.ts';
import { natsOpt } from './options.ts';

const impl = () => import('../run/fleet.ts');
const positiveInt = (v: string) => Number(v);

export function registerFleet(program: Command): void {
  program
    .command('cordon')
    .description('stop a host taking new workloads and incoming migrations (what it runs keeps running)')
    .argument('<host>', 'host name')
    .option('--reason <text>', 'why, for whoever reads `ferry hosts`', '')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (host: string, opts: { reason: string; json?: boolean; nats?: string }) => (await impl()).cordon(host, opts)));

  program
    .command('uncordon')
    .description('let a cordoned host take workloads and migrations again')
    .argument('<host>', 'host name')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (host: string, opts: { json?: boolean; nats?: string }) => (await impl()).uncordon(host, opts)));

  program
    .command('drain')
    .description('cordon a host, then live-migrate every workload off it to hosts chosen by placement (exit 0: the host is empty; 3: some stayed, each named)')
    .argument('<host>', 'host name')
    .option('--parallel <n>', 'migrations at once', positiveInt, 2)
    .option('--bandwidth <MBps>', "cap shared by the drain's migrations, MB/s (each of --parallel gets its share)", Number)
    .addOption(new Option('--mode <mode>', 'how each migration switches over (see `ferry migrate --mode`)').choices(['precopy', 'postcopy', 'hybrid']).default('precopy'))
    .option('--dry-run', 'print the plan only: nothing is cordoned or moved')
    .option('--json', 'print the drain as JSON (progress: one JSON event per line on stderr)')
    .option(...natsOpt)
    .action(action(async (host: string, opts: Parameters<Awaited<ReturnType<typeof impl>>['drain']>[1]) => (await impl()).drain(host, opts)));

  program
    .command('rebalance')
    .description('move workloads to even out memory and CPU load across hosts (a second run right after moves nothing)')
    .option('--max-moves <n>', 'most moves', positiveInt, 10)
    .option('--parallel <n>', 'migrations at once', positiveInt, 2)
    .addOption(new Option('--mode <mode>', 'how each migration switches over (see `ferry migrate --mode`)').choices(['precopy', 'postcopy', 'hybrid']).default('precopy'))
    .option('--dry-run', 'print the plan only')
    .option('--json', 'print as JSON (progress: one JSON event per line on stderr)')
    .option(...natsOpt)
    .action(action(async (opts: Parameters<Awaited<ReturnType<typeof impl>>['rebalance']>[0]) => (await impl()).rebalance(opts)));

  program
    .command('drains')
    .description('list drains and rebalances, newest first, or show one')
    .argument('[id]', 'a drain (d-...) or rebalance (r-...) id')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (id: string | undefined, opts: { json?: boolean; nats?: string }) => (await impl()).drains(id, opts)));
}
