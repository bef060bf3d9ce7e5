// Entry of the `ferry` command: builds the command tree from one file per command.
import { Command, CommanderError } from 'commander';
import { reportFailure } from './output.ts';
import { registerLab } from './commands/lab.ts';
import { registerHosts } from './commands/hosts.ts';
import { registerWorkloads } from './commands/workloads.ts';
import { registerMigrations } from './commands/migrations.ts';
import { registerEngine } from './commands/engine.ts';
import { registerPki } from './commands/pki.ts';
import { addClusterAccessOptions } from './cluster.ts';

const program = new Command('ferry')
  .description('Live migration of running Linux processes and containers between hosts')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

// One line per command group; each file adds its own subcommands, options and --help text.
registerLab(program);
registerHosts(program);
registerWorkloads(program);
registerMigrations(program);
registerEngine(program);
registerPki(program);
addClusterAccessOptions(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  reportFailure(err, process.argv.includes('--json'));
}
