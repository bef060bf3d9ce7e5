// `ferry hosts`: the coordinator's view of the cluster.
import type { Command } from 'commander';
import { action } from '../output.ts';
import { natsOpt } from './options.ts';

export function registerHosts(program: Command): void {
  program
    .command('hosts')
    .description('list the hosts in the cluster with their facts and liveness')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (opts: { json?: boolean; nats?: string }) => (await import('../run/hosts.ts')).hosts(opts)));
}
