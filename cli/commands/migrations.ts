// `ferry migrate`, `status`, `watch`, `cancel`, `history`: migrations between hosts.
import { type Command, Option } from 'commander';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { action } from '../output.ts';
import { natsOpt, positiveInt } from './options.ts';

const impl = () => import('../run/migrations.ts');

export function registerMigrations(program: Command): void {
  program
    .command('migrate')
    .description('move a running workload to another host; exits 0 when it runs there, 3 when it rolled back and still runs on its source, 2 for an invalid request')
    .argument('[workload]', 'workload name')
    .requiredOption('--to <host>', 'destination host (with --job: hosts, comma-separated, in the order of the workloads\' names)')
    .option('--job <job>', "every running workload of the job, one after the other, each with its connections")
    .option('--precopy', 'live migration (the default): copy memory in rounds while the workload runs, build it on the destination meanwhile, freeze only for the last delta')
    .option('--stop-and-copy', 'freeze first, then copy everything')
    .option('--downtime-budget <ms>', 'pre-copy: switch over once the predicted downtime fits this', positiveInt, 100)
    .option('--max-rounds <n>', 'pre-copy: switch over after this many rounds whatever the prediction', positiveInt, 30)
    .option('--bandwidth <MBps>', 'cap of the data stream, MB/s (default: none)', Number)
    .addOption(
      new Option('--mode <mode>', 'precopy: rounds, then the last delta frozen (throttled if it outruns the link); postcopy: one round, then resume on the destination at once and fetch the rest; hybrid: rounds while they converge, then post-copy instead of throttling')
        .choices(['precopy', 'postcopy', 'hybrid'])
        .default('precopy'),
    )
    .option('--postcopy-backup <dir>', 'with --mode postcopy|hybrid: a directory on storage both hosts share; before the workload resumes, the source writes there every page post-copy still has to carry, so losing the source or the link during post-copy does not lose the workload')
    .option('--no-verify', 'skip verifying the restored tree against the image before the commit point (on by default)')
    .option('--json', 'stdout: the final report as one JSON document; stderr: progress as JSON lines, the first (migration.accepted) naming the migration id (see `ferry help json`)')
    .option(...natsOpt)
    .action(
      action(async (workload: string | undefined, opts: import('../run/migrations.ts').MigrateOptions & { job?: string }) => {
        if (opts.job && workload !== undefined) throw new FerryError(ErrorCode.InvalidRequest, '--job moves every workload of the job: give no workload name with it');
        if (opts.job) return (await impl()).migrateJob(opts.job, opts);
        if (workload === undefined) throw new FerryError(ErrorCode.InvalidRequest, 'migrate what? a workload name, or --job JOB');
        return (await impl()).migrate(workload, opts);
      }),
    );

  program
    .command('status')
    .description('migrations in flight, or one migration')
    .argument('[id]', 'migration id')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (id: string | undefined, opts: { json?: boolean; nats?: string }) => (await impl()).status(id, opts)));

  program
    .command('history')
    .description('every recorded migration, newest first')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (opts: { json?: boolean; nats?: string }) => (await impl()).history(opts)));

  program
    .command('watch')
    .description('live view of migrations: their phases, rounds and outcome (until Ctrl-C); with ID until it ends (an ended one prints its final state at once, an unknown one exits 2), exit code as for migrate')
    .argument('[id]', 'migration id')
    .option('--json', 'one JSON event per line (an ended migration: its final report)')
    .option(...natsOpt)
    .action(action(async (id: string | undefined, opts: { json?: boolean; nats?: string }) => (await impl()).watch(id, opts)));

  program
    .command('cancel')
    .description('cancel a migration: before its commit point it rolls back (exit 0); after it, or once it ended, the cancel is refused (exit 2) and it completes')
    .argument('<id>', 'migration id')
    .option('--json', 'print as JSON')
    .option(...natsOpt)
    .action(action(async (id: string, opts: { json?: boolean; nats?: string }) => (await impl()).cancel(id, opts)));
}
