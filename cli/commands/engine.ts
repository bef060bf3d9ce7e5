// `ferry checkpoint`, `ferry restore` and `ferry image inspect`: the engine on one host.
import type { Command } from 'commander';
import { checkpoint } from '../../agent/engine/checkpoint.ts';
import { inspectImage } from '../../agent/engine/inspect.ts';
import { restore } from '../../agent/engine/restore.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { action, printResult } from '../output.ts';
import { describeVerification } from '../format.ts';

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

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
    .action(
      action(async (pidArg: string, opts: { images: string; leaveRunning: boolean; json: boolean }) => {
        const r = checkpoint(parsePid(pidArg), { imagesDir: opts.images, leaveRunning: opts.leaveRunning });
        printResult(opts.json, { ...r, leftRunning: opts.leaveRunning }, (v) =>
          [
            `checkpointed pid ${v.pid} (${v.processes} process, ${v.threads} thread${v.threads === 1 ? '' : 's'}) into ${v.imagesDir}`,
            `pages ${mib(v.pagesBytes)}, frozen ${v.frozenMs.toFixed(1)} ms, total ${v.totalMs.toFixed(1)} ms`,
            v.leftRunning ? 'the process keeps running' : 'the process was ended',
          ].join('\n'),
        );
      }),
    );

  program
    .command('restore')
    .description('Restore a process from an image directory; prints its pid (it is not a child of this command)')
    .requiredOption('--images <dir>', 'image directory')
    .option('--netns <name|path>', 'network namespace to restore into (a name under /run/netns, or a path); needed when the image had its own')
    .option('--verify', 'before the tree runs, compare it with the image (status, mappings, descriptors, memory); a difference kills it and fails with FERRY_VERIFY_MISMATCH', false)
    .option('--json', 'print JSON', false)
    .action(
      action(async (opts: { images: string; netns?: string; verify: boolean; json: boolean }) => {
        const netns = opts.netns === undefined ? undefined : opts.netns.includes('/') ? opts.netns : `/run/netns/${opts.netns}`;
        const r = restore(opts.images, { netns, verify: opts.verify });
        printResult(opts.json, r, (v) => (v.verify ? `${v.pid}\n${describeVerification(v.verify)}` : `${v.pid}`));
      }),
    );

  const image = program.command('image').description('Checkpoint images');
  image
    .command('inspect')
    .description('Show what an image holds and verify its page checksums')
    .argument('<dir>', 'image directory')
    .option('--json', 'print JSON', false)
    .action(
      action(async (dir: string, opts: { json: boolean }) => {
        const s = inspectImage(dir);
        printResult(opts.json, s, (v) =>
          [
            `image ${v.dir}: format v${v.version}, created ${v.createdAt}, root pid ${v.root}, checksums ${v.checksums}`,
            `machine: kernel ${v.machine.kernelRelease}, XCR0 ${v.machine.xcr0}, XSAVE ${v.machine.xstateSize} bytes, vDSO ${v.machine.vdsoLayout.map((e) => `${e.name}:${e.size}`).join(' ')}`,
            ...v.processes.flatMap((p) => [
              `pid ${p.pid} (${p.comm}) ppid ${p.ppid} exe ${p.exe}`,
              `  threads ${p.threads.join(' ')}`,
              `  ${p.vmas} mappings, ${p.pageRuns} page runs, ${mib(p.pagesBytes)}`,
              ...p.fds.map((f) => `  fd ${f.fd}: ${f.kind} ${f.path} @${f.pos}`),
            ]),
            ...v.shared.map((s, i) => `shared #${i}: ${JSON.stringify(s)}`),
          ].join('\n'),
        );
      }),
    );
}
