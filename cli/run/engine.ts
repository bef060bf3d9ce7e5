// `ferry checkpoint`, `restore`, `image inspect`, loaded when they run (cli/commands/engine.ts defines them).
import { checkpoint as checkpointTree } from '../../agent/engine/checkpoint.ts';
import { inspectImage } from '../../agent/engine/image/inspect.ts';
import { restore as restoreTree } from '../../agent/engine/restore.ts';
import { describeVerification } from '../format.ts';
import { printResult } from '../output.ts';

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

export async function checkpoint(pid: number, opts: { images: string; leaveRunning: boolean; json: boolean }): Promise<void> {
  const r = checkpointTree(pid, { imagesDir: opts.images, leaveRunning: opts.leaveRunning });
  printResult(opts.json, { ...r, leftRunning: opts.leaveRunning }, (v) =>
    [
      `checkpointed pid ${v.pid} (${v.processes} process, ${v.threads} thread${v.threads === 1 ? '' : 's'}) into ${v.imagesDir}`,
      `pages ${mib(v.pagesBytes)}, frozen ${v.frozenMs.toFixed(1)} ms, total ${v.totalMs.toFixed(1)} ms`,
      v.leftRunning ? 'the process keeps running' : 'the process was ended',
    ].join('\n'),
  );
}

export async function restore(opts: { images: string; netns?: string; verify: boolean; json: boolean }): Promise<void> {
  const netns = opts.netns === undefined ? undefined : opts.netns.includes('/') ? opts.netns : `/run/netns/${opts.netns}`;
  const r = restoreTree(opts.images, { netns, verify: opts.verify });
  printResult(opts.json, r, (v) => (v.verify ? `${v.pid}\n${describeVerification(v.verify)}` : `${v.pid}`));
}

/** An image summary in lines (image inspect of a directory or an archive). */
export const describeImage = (v: ReturnType<typeof inspectImage>): string =>
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
  ].join('\n');
