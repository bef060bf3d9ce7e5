// `ferry checkpoint`, `ferry restore` and `ferry image ...`: a workload through the cluster
// (by name, images on shared storage: docs/hpc.md), or the engine on one host (a pid).
import type { Command } from 'commander';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { action } from '../output.ts';
import { natsOpt } from './options.ts';

const impl = () => import('../run/engine.ts');
const jobs = () => import('../run/jobs.ts');
const archive = () => import('../run/image-archive.ts');

function parsePid(s: string): number {
  const pid = Number(s);
  if (!Number.isInteger(pid) || pid <= 0) throw new FerryError(ErrorCode.InvalidRequest, `not a pid: ${s}`);
  return pid;
}

const isPid = (s: string) => /^\d+$/.test(s);

export function registerEngine(program: Command): void {
  program
    .command('checkpoint')
    .description('Checkpoint a workload (by name, through the cluster, into a new snapshot of DIR on shared storage) or a process on this host (by pid); ends it unless --leave-running')
    .argument('[name|pid]', 'workload name, or process id on this host')
    .requiredOption('--images <dir>', "images directory (a workload's: kept atomically, the previous snapshot stays until the new one is complete)")
    .option('--job <job>', "every workload of the job at one cut (all frozen before any is dumped; DIR/<workload>/ each, DIR/job.json the cut)")
    .option('--leave-running', 'let it run on after the checkpoint', false)
    .option('--json', 'print JSON', false)
    .option(...natsOpt)
    .action(
      action(async (target: string | undefined, opts: { images: string; job?: string; leaveRunning: boolean; json: boolean; nats?: string }) => {
        if (opts.job) {
          if (target !== undefined) throw new FerryError(ErrorCode.InvalidRequest, '--job takes every workload of the job: give no name or pid with it');
          return (await jobs()).checkpointJob(opts.job, opts);
        }
        if (target === undefined) throw new FerryError(ErrorCode.InvalidRequest, 'checkpoint what? a workload name, a pid, or --job JOB');
        return isPid(target) ? (await impl()).checkpoint(parsePid(target), opts) : (await jobs()).checkpointWorkload(target, opts);
      }),
    );

  program
    .command('restore')
    .description("Restore a checkpointed workload by name (through the cluster, on --host or where it was; refused while it runs anywhere), or without a name a process image on this host (prints its pid)")
    .argument('[name]', 'workload name')
    .requiredOption('--images <dir>', 'images directory')
    .option('--host <host>', 'workload: the host to restore it on (default: where it was checkpointed, if that host takes workloads)')
    .option('--job <job>', "every workload of the job's last cut in DIR, with the connections between them")
    .option('--hosts <h1,h2,...>', '--job: the hosts, in the order of the workloads\' names (default: each where it was, or placement)')
    .option('--netns <name|path>', 'pid image: network namespace to restore into (a name under /run/netns, or a path); needed when the image had its own')
    .option('--verify', 'pid image: before the tree runs, compare it with the image (status, mappings, descriptors, memory); a difference kills it and fails with FERRY_VERIFY_MISMATCH', false)
    .option('--json', 'print JSON', false)
    .option(...natsOpt)
    .action(
      action(async (name: string | undefined, opts: { images: string; host?: string; job?: string; hosts?: string; netns?: string; verify: boolean; json: boolean; nats?: string }) => {
        if (opts.job) {
          if (name !== undefined || opts.host) throw new FerryError(ErrorCode.InvalidRequest, '--job restores every workload of the job: no name, and --hosts instead of --host');
          return (await jobs()).restoreJob(opts.job, opts);
        }
        if (opts.hosts) throw new FerryError(ErrorCode.InvalidRequest, '--hosts is for --job');
        if (name === undefined) return (await impl()).restore(opts);
        if (opts.netns || opts.verify) throw new FerryError(ErrorCode.InvalidRequest, '--netns and --verify are for a pid image (no name); a workload comes back with its own network namespace');
        return (await jobs()).restoreWorkload(name, opts);
      }),
    );

  const image = program.command('image').description('Checkpoint images');
  image
    .command('inspect')
    .description('Show what an image holds and verify its checksums: an image directory, a workload images directory (its current snapshot) or an archive of `image export`')
    .argument('<dir|file>', 'image directory or archive')
    .option('--json', 'print JSON', false)
    .action(action(async (target: string, opts: { json: boolean }) => (await archive()).inspectAny(target, opts)));
  image
    .command('export')
    .description("Pack an image (a workload's current snapshot, or a plain image directory) into one file: tar, zstd-compressed, with a SHA-256 of every file inside")
    .argument('<dir>', 'image directory')
    .argument('<file>', 'archive to write (.tar.zst)')
    .option('--json', 'print JSON', false)
    .action(action(async (dir: string, file: string, opts: { json: boolean }) => (await archive()).exportImage(dir, file, opts)));
  image
    .command('import')
    .description('Unpack an archive of `image export` into an images directory as its new current snapshot, after checking every checksum and the image itself')
    .argument('<file>', 'archive (.tar.zst)')
    .argument('<dir>', 'images directory')
    .option('--json', 'print JSON', false)
    .action(action(async (file: string, dir: string, opts: { json: boolean }) => (await archive()).importImage(file, dir, opts)));
}
