// `ferry launch`: a job step that stays in the foreground for its workload (docs/hpc.md). It
// restores the workload from the images directory when that holds a checkpoint of it, else
// runs the command; on the checkpoint signal it checkpoints the workload there, ends it and
// exits with the requeue code; with --interval it checkpoints periodically while the workload
// runs on; when the workload ends it exits with the workload's own exit status.
//
// The exit status: the workload runs under a small shell that waits for the command and writes
// its status into DIR/exit-status. The shell is part of the checkpointed tree, so a workload
// restored on another host still writes it there (shared storage) when it ends.
import type { NatsConnection } from '@nats-io/transport-node';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { EXIT_STATUS_FILE, JobManifest, MANIFEST_JSON } from '../../shared/job-image.ts';
import { parseRecord } from '../../shared/records.ts';
import { currentSnapshot, retireSnapshots } from '../../agent/jobs/image-store.ts';
import { askCoordinator, connectCluster, type ClusterOptions } from '../cluster.ts';
import { describeCheckpoint, describeRestore } from './jobs.ts';

/** Slurm's RequeueExit convention; outside 0-4 (ferry's own codes), sysexits (64-78) and 126+ (shells, signals). */
export const DEFAULT_REQUEUE_EXIT = 85;
/** How often the workload's exit status file is looked for, and how often its state is asked. */
const EXIT_POLL_MS = 200;
const STATE_POLL_MS = 3_000;

export interface LaunchOptions extends ClusterOptions {
  name: string;
  images: string;
  host?: string;
  checkpointSignal: NodeJS.Signals;
  intervalMs?: number;
  requeueExit: number;
  /** The job it belongs to (`ferry checkpoint|restore|migrate --job`). */
  job?: string;
  json?: boolean;
}

/** The command under a shell that records its exit status (written to a temporary name, then renamed). */
export const wrapCommand = (command: string[], exitFile: string): string[] => [
  '/bin/sh',
  '-c',
  'st=0; "$@" || st=$?; echo "$st" > "$0.tmp" && mv -f "$0.tmp" "$0"; exit "$st"',
  exitFile,
  ...command,
];

function readExitStatus(file: string): number | null {
  if (!existsSync(file)) return null;
  const n = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new FerryError(ErrorCode.BadImage, `${file} holds no exit status`);
  return n;
}

/** The images directory's current snapshot, checked to be of this workload; null when it holds none. */
function checkpointOf(images: string, name: string): { seq: number } | null {
  const cur = currentSnapshot(images);
  if (!cur) return null;
  const file = path.join(cur.dir, MANIFEST_JSON);
  const parsed = existsSync(file) ? parseRecord(JobManifest, readFileSync(file, 'utf8')) : ({ ok: false, reason: 'missing' } as const);
  if (!parsed.ok) throw new FerryError(ErrorCode.BadImage, `${file}: ${parsed.reason}`, { details: { images } });
  if (parsed.value.workload !== name) throw new FerryError(ErrorCode.InvalidRequest, `${images} holds a checkpoint of "${parsed.value.workload}", not of "${name}"`);
  return { seq: cur.seq };
}

export async function launch(command: string[], opts: LaunchOptions): Promise<void> {
  const images = path.resolve(opts.images);
  const exitFile = path.join(images, EXIT_STATUS_FILE);
  const say = (event: string, text: string, data: Record<string, unknown> = {}) =>
    process.stderr.write(opts.json ? `${JSON.stringify({ event, at: new Date().toISOString(), workload: opts.name, ...data })}\n` : `ferry launch: ${text}\n`);
  const finish = (result: Record<string, unknown>, code: number) => {
    if (opts.json) process.stdout.write(`${JSON.stringify({ workload: opts.name, images, ...result, exitCode: code }, null, 2)}\n`);
    process.exitCode = code;
  };
  // Signals are taken first: one that arrives while the workload starts waits for it.
  let wanted: 'checkpoint' | 'stop' | null = null;
  let wake: () => void = () => undefined;
  const onSignal = (what: 'checkpoint' | 'stop') => () => {
    wanted ??= what;
    wake();
  };
  const onCheckpoint = onSignal('checkpoint');
  const onStop = onSignal('stop');
  process.on(opts.checkpointSignal, onCheckpoint);
  for (const s of ['SIGTERM', 'SIGINT'] as const) if (s !== opts.checkpointSignal) process.on(s, onStop);
  mkdirSync(images, { recursive: true });
  const resumeFrom = checkpointOf(images, opts.name);
  rmSync(exitFile, { force: true });
  let nc: NatsConnection | null = null;
  try {
    nc = await connectCluster(opts);
    let host: string;
    if (resumeFrom) {
      const r = await askCoordinator(nc, 'restore', { name: opts.name, images, ...(opts.host ? { host: opts.host } : {}) });
      host = r.host;
      say('launch.restored', describeRestore(r), { host, seq: r.seq, pid: r.pid });
    } else {
      const w = await askCoordinator(nc, 'run', { name: opts.name, command: wrapCommand(command, exitFile), ...(opts.host ? { host: opts.host } : {}), ...(opts.job ? { policy: { job: opts.job } } : {}) });
      host = w.host;
      say('launch.started', `started ${opts.name} on ${host} (pid ${w.rootPid ?? '-'})`, { host, pid: w.rootPid });
    }
    try {
      await watch(nc, opts, images, exitFile, host, () => wanted, (f) => (wake = f), say, finish);
    } catch (err) {
      // The workload runs outside the job's own cgroup: a step that gives up must not leave it
      // running unwatched. The last complete checkpoint stays in DIR.
      const e = FerryError.from(err);
      if (e.code !== ErrorCode.WorkloadEnded) {
        const stopped = await askCoordinator(nc, 'stop', { name: opts.name }).catch(() => null);
        if (stopped) say('launch.stopped', `${opts.name} stopped on ${stopped.host}: ${e.message}`, { host: stopped.host, error: e.code });
      }
      throw err;
    }
  } finally {
    process.off(opts.checkpointSignal, onCheckpoint);
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.off(s, onStop);
    await nc?.close();
  }
}

type Say = (event: string, text: string, data?: Record<string, unknown>) => void;

/** Waits for the workload's end, the checkpoint signal, or the next periodic checkpoint. */
async function watch(
  nc: NatsConnection,
  opts: LaunchOptions,
  images: string,
  exitFile: string,
  host: string,
  wanted: () => 'checkpoint' | 'stop' | null,
  onWake: (f: () => void) => void,
  say: Say,
  finish: (result: Record<string, unknown>, code: number) => void,
): Promise<void> {
  let nextCheckpoint = opts.intervalMs ? Date.now() + opts.intervalMs : Infinity;
  let nextStateCheck = Date.now() + STATE_POLL_MS;
  let missingSince: number | null = null;
  for (;;) {
    const code = readExitStatus(exitFile);
    if (code !== null) {
      // The job is done: its checkpoints go, so that running the step again starts afresh.
      retireSnapshots(images);
      rmSync(exitFile, { force: true });
      await askCoordinator(nc, 'stop', { name: opts.name }).catch(() => undefined);
      say('launch.exited', `${opts.name} exited with status ${code}`, { exitStatus: code });
      return finish({ outcome: 'exited', host, exitStatus: code }, code);
    }
    const w = wanted();
    if (w === 'checkpoint') {
      const r = await askCoordinator(nc, 'checkpoint', { name: opts.name, images, leaveRunning: false });
      say('launch.checkpointed', `${describeCheckpoint(r)}\nexit ${opts.requeueExit}: requeue the job; it resumes from ${images}`, { host: r.host, seq: r.seq, frozenMs: r.frozenMs, pagesBytes: r.pagesBytes, bytesWritten: r.bytesWritten, incremental: r.incremental });
      return finish({ outcome: 'checkpointed', host: r.host, seq: r.seq, snapshot: r.snapshot }, opts.requeueExit);
    }
    if (w === 'stop') {
      const s = await askCoordinator(nc, 'stop', { name: opts.name });
      say('launch.stopped', `${opts.name} stopped on ${s.host} (terminated; not checkpointed)`, { host: s.host });
      return finish({ outcome: 'stopped', host: s.host }, 143);
    }
    if (Date.now() >= nextCheckpoint) {
      // A periodic checkpoint that fails leaves the previous one in place and the job running: said, not fatal.
      const r = await askCoordinator(nc, 'checkpoint', { name: opts.name, images, leaveRunning: true }).catch((err: unknown) => FerryError.from(err));
      if (r instanceof FerryError) say('launch.periodic-failed', `periodic checkpoint failed (the previous one stays): ${r.message} [${r.code}]`, { error: r.toWire() });
      else say('launch.periodic', `periodic ${describeCheckpoint(r).split('\n')[0]}`, { host: r.host, seq: r.seq, frozenMs: r.frozenMs, pagesBytes: r.pagesBytes, bytesWritten: r.bytesWritten, incremental: r.incremental });
      nextCheckpoint = Date.now() + opts.intervalMs!;
    }
    if (Date.now() >= nextStateCheck) {
      nextStateCheck = Date.now() + STATE_POLL_MS;
      // A listing that failed (NATS reconnecting, a failover) is asked again at the next poll.
      const listing = await askCoordinator(nc, 'ps', {}).catch(() => null);
      if (!listing) continue;
      const { workloads } = listing;
      const mine = workloads.find((x) => x.name === opts.name && (x.state === 'running' || x.state === 'frozen' || x.state === 'migrating'));
      if (mine) {
        host = mine.host;
        missingSince = null;
      } else if (missingSince === null) missingSince = Date.now();
      // Gone, and no status written a while after: it was killed, or stopped by someone else.
      else if (Date.now() - missingSince > STATE_POLL_MS && readExitStatus(exitFile) === null) {
        throw new FerryError(ErrorCode.WorkloadEnded, `workload "${opts.name}" no longer runs and left no exit status (killed, or stopped by someone else)`, { details: { workload: opts.name } });
      }
    }
    await new Promise<void>((resolve) => {
      onWake(resolve);
      void sleep(EXIT_POLL_MS).then(resolve);
    });
  }
}
