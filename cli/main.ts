// Entry of the `ferry` command: builds the command tree from one file per command group. The
// definitions load nothing heavy (zod, NATS, the engine): each action imports its implementation
// from cli/run/ when it runs, so that \`ferry --help\` starts fast.
import { Command, CommanderError } from 'commander';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { ExitCode, reportFailure } from './output.ts';
import { ferryVersion } from './version.ts';
import { registerLab } from './commands/lab.ts';
import { registerHosts } from './commands/hosts.ts';
import { registerWorkloads } from './commands/workloads.ts';
import { registerMigrations } from './commands/migrations.ts';
import { registerFleet } from './commands/fleet.ts';
import { registerEngine } from './commands/engine.ts';
import { registerJobs } from './commands/jobs.ts';
import { registerPki } from './commands/pki.ts';
import { registerDashboard } from './commands/dashboard.ts';
import { addClusterAccessOptions } from './commands/options.ts';
import { registerMeta } from './commands/meta.ts';

const program = new Command('ferry')
  .description('Live migration of running Linux processes and containers between hosts')
  .version(ferryVersion(), '-V, --version')
  .showHelpAfterError('(`ferry help COMMAND` or `ferry COMMAND --help` for usage)')
  .exitOverride();

// One line per command group; each file adds its own subcommands, options and --help text.
registerLab(program);
registerHosts(program);
registerWorkloads(program);
registerMigrations(program);
registerFleet(program);
registerEngine(program);
registerJobs(program);
registerDashboard(program);
registerPki(program);
addClusterAccessOptions(program);
registerMeta(program);

// Every subcommand throws instead of exiting, so that the one place below decides the exit code.
const everyCommand = (c: Command): Command[] => [c, ...c.commands.flatMap(everyCommand)];
for (const c of everyCommand(program)) c.exitOverride();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and --version end with 0; anything else commander refuses is a usage error: exit 2.
    if (err.exitCode === 0) process.exit(0);
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ error: new FerryError(ErrorCode.InvalidRequest, err.message.replace(/^error: /, '')).toWire() }, null, 2) + '\n');
    process.exit(ExitCode.InvalidRequest);
  }
  reportFailure(err, process.argv.includes('--json'));
}
