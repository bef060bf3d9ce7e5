// `ferry checkpoint`, `ferry restore` and `ferry image inspect`: the engine on one host.
import type { Command } from 'commander';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { action } from '../output.ts';

const impl = () => import('../run/engine.ts');

function parsePid(s: string): number {
  const pid = Number(s);
  if (!Number.isInteger(pid) || pid <= 0) throw new FerryError(ErrorCode.InvalidRequest, `not a pid: ${s}`);
  return pid;
}

export function registerEngine(program: Command): void {
  program
    .command('checkpoint')
    .description('Checkpoint a running process into an image directory (ends it unless --leave-running)')
    .argument('<pid>', 'process to checkpoint')
    .requiredOption('--images <dir>', 'image directory to create')
    .option('--leave-running', 'let the process run on after the checkpoint', false)
    .option('--json', 'print JSON', false)
    .action(action(async (pidArg: string, opts: { images: string; leaveRunning: boolean; json: boolean }) => (await impl()).checkpoint(parsePid(pidArg), opts)));

  program
    .command('restore')
    .description('Restore a process from an image directory; prints its pid (it is not a child of this command)')
    .requiredOption('--images <dir>', 'image directory')
    .option('--netns <name|path>', 'network namespace to restore into (a name under /run/netns, or a path); needed when the image had its own')
    .option('--verify', 'before the tree runs, compare it with the image (status, mappings, descriptors, memory); a difference kills it and fails with FERRY_VERIFY_MISMATCH', false)
    .option('--json', 'print JSON', false)
    .action(action(async (opts: { images: string; netns?: string; verify: boolean; json: boolean }) => (await impl()).restore(opts)));

  const image = program.command('image').description('Checkpoint images');
  image
    .command('inspect')
    .description('Show what an image holds and verify its page checksums')
    .argument('<dir>', 'image directory')
    .option('--json', 'print JSON', false)
    .action(action(async (dir: string, opts: { json: boolean }) => (await impl()).inspect(dir, opts)));
}
