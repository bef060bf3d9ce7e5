// `ferry launch`: a job step for batch schedulers (docs/hpc.md).
import type { Command } from 'commander';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { action } from '../output.ts';
import { natsOpt } from './options.ts';

const impl = () => import('../run/launch.ts');

/** USR1, SIGUSR1 or a number -> the signal's name; only signals a job may be sent and may catch. */
export function parseSignal(v: string): NodeJS.Signals {
  const byNumber: Record<string, string> = { '1': 'HUP', '2': 'INT', '10': 'USR1', '12': 'USR2', '15': 'TERM' };
  const name = `SIG${(byNumber[v] ?? v.toUpperCase()).replace(/^SIG/, '')}`;
  if (!['SIGUSR1', 'SIGUSR2', 'SIGHUP', 'SIGTERM', 'SIGINT', 'SIGCONT', 'SIGXCPU', 'SIGURG', 'SIGWINCH'].includes(name))
    throw new FerryError(ErrorCode.InvalidRequest, `--checkpoint-signal ${v}: not a signal a job step can catch (USR1, USR2, HUP, TERM, INT, CONT, XCPU, URG, WINCH)`);
  return name as NodeJS.Signals;
}

/** 90, 90s, 15m, 2h -> milliseconds (at least one second). */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'] : NaN;
  if (!Number.isFinite(ms) || ms < 1_000) throw new FerryError(ErrorCode.InvalidRequest, `--interval ${v}: give a duration of at least 1s (90s, 15m, 2h)`);
  return ms;
}

function parseExitCode(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new FerryError(ErrorCode.InvalidRequest, `--requeue-exit ${v}: an exit code from 1 to 255`);
  return n;
}

export function registerJobs(program: Command): void {
  program
    .command('launch')
    .description(
      "a batch job step: runs the workload (or restores it, when DIR holds a checkpoint of it) and stays in the foreground; exits with the workload's own exit status, or, on the checkpoint signal, checkpoints it into DIR, ends it and exits with the requeue code (docs/hpc.md)",
    )
    .requiredOption('--name <name>', 'the workload (and job) name, cluster-unique')
    .requiredOption('--images <dir>', 'images directory on storage every host shares: the checkpoint lives here between runs')
    .option('--host <host>', 'the host to run or restore it on (default: where it was checkpointed, else placement)')
    .option('--checkpoint-signal <sig>', 'checkpoint, end the workload and exit with the requeue code on this signal', parseSignal, 'SIGUSR1' as NodeJS.Signals)
    .option('--interval <duration>', 'also checkpoint every DURATION while the workload runs on (90s, 15m, 2h): a crash of the node loses at most that much', parseDuration)
    .option('--job <job>', 'a job it belongs to: `ferry checkpoint|restore|migrate --job` take all its workloads together')
    .option('--requeue-exit <code>', 'exit code after a checkpoint on the signal (configure the scheduler to requeue on it; Slurm: RequeueExit)', parseExitCode, 85)
    .option('--json', 'stdout: one JSON document at the end (outcome, exitCode); stderr: progress as JSON lines')
    .option(...natsOpt)
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(action(async (command: string[], opts: import('../run/launch.ts').LaunchOptions & { interval?: number }) => (await impl()).launch(command, { ...opts, intervalMs: opts.interval })));
}
