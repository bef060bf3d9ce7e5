// `ferry checkpoint NAME` and `ferry restore NAME`: a workload through the coordinator, its
// images on shared storage (docs/hpc.md). Loaded when they run (cli/commands/engine.ts).
import path from 'node:path';
import type { CheckpointReply, RestoreReply } from '../../shared/job-image.ts';
import { askCoordinator, withCluster, type ClusterOptions } from '../cluster.ts';
import { bytes } from '../format.ts';
import { printResult } from '../output.ts';

const ms = (n: number) => `${n.toFixed(1)} ms`;

export const describeCheckpoint = (v: CheckpointReply): string =>
  [
    `checkpointed ${v.workload} on ${v.host} into ${v.snapshot} (snapshot ${v.seq}; ${v.processes} process(es), ${v.threads} thread(s), pages ${bytes(v.pagesBytes)}; ${v.incremental ? 'incremental: ' : ''}${bytes(v.bytesWritten)} written)`,
    `frozen ${ms(v.frozenMs)}, total ${ms(v.totalMs)}; ${v.leftRunning ? `it keeps running on ${v.host}` : `it was ended: \`ferry restore ${v.workload} --images ${v.images}\` brings it back`}`,
  ].join('\n');

export const describeRestore = (v: RestoreReply): string =>
  `restored ${v.workload} on ${v.host} from ${v.snapshot} (snapshot ${v.seq}): pid ${v.pid}${v.address ? `, address ${v.address}` : ''}, ${v.processes} process(es), ${ms(v.totalMs)}`;

export async function checkpointWorkload(name: string, opts: ClusterOptions & { images: string; leaveRunning: boolean; json: boolean }): Promise<void> {
  const r = await withCluster(opts, (nc) => askCoordinator(nc, 'checkpoint', { name, images: path.resolve(opts.images), leaveRunning: opts.leaveRunning }));
  printResult(opts.json, r, describeCheckpoint);
}

export async function checkpointJob(job: string, opts: ClusterOptions & { images: string; leaveRunning: boolean; json: boolean }): Promise<void> {
  const r = await withCluster(opts, (nc) => askCoordinator(nc, 'checkpoint-job', { job, images: path.resolve(opts.images), leaveRunning: opts.leaveRunning }));
  printResult(opts.json, r, (v) =>
    [`job ${v.job}: ${v.members.length} member(s) checkpointed at one cut into ${v.images} (held ${ms(v.barrierMs)} from the first member frozen, total ${ms(v.totalMs)})`, ...v.members.map(describeCheckpoint)].join('\n'),
  );
}

export async function restoreJob(job: string, opts: ClusterOptions & { images: string; hosts?: string; json: boolean }): Promise<void> {
  const hosts = opts.hosts ? opts.hosts.split(',').map((h) => h.trim()).filter(Boolean) : undefined;
  const r = await withCluster(opts, (nc) => askCoordinator(nc, 'restore-job', { job, images: path.resolve(opts.images), ...(hosts ? { hosts } : {}) }));
  printResult(opts.json, r, (v) => [`job ${v.job}: ${v.members.length} member(s) restored from the cut taken ${v.takenAt}, ${ms(v.totalMs)}`, ...v.members.map(describeRestore)].join('\n'));
}

export async function restoreWorkload(name: string, opts: ClusterOptions & { images: string; host?: string; json: boolean }): Promise<void> {
  const r = await withCluster(opts, (nc) => askCoordinator(nc, 'restore', { name, images: path.resolve(opts.images), ...(opts.host ? { host: opts.host } : {}) }));
  printResult(opts.json, r, describeRestore);
}
