// `ferry cordon|uncordon|drain|rebalance|drains`, loaded when they run (cli/commands/fleet.ts defines them).
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError } from '../../shared/errors.ts';
import type { FleetEvent, FleetItem, FleetJob } from '../../shared/fleet.ts';
import type { MigrationMode } from '../../shared/migration.ts';
import { askCoordinator, withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { ExitCode, printResult } from '../output.ts';

type Common = { json?: boolean; nats?: string };

export async function cordon(host: string, opts: Common & { reason: string }): Promise<void> {
  const r = await withCluster(opts, (nc) => askCoordinator(nc, 'cordon', { host, reason: opts.reason }));
  printResult(!!opts.json, r, (v) => `${v.host} ${v.changed ? 'cordoned' : 'was already cordoned'}`);
}

export async function uncordon(host: string, opts: Common): Promise<void> {
  const r = await withCluster(opts, (nc) => askCoordinator(nc, 'uncordon', { host }));
  printResult(!!opts.json, r, (v) => `${v.host} ${v.changed ? 'uncordoned' : 'was not cordoned'}`);
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function renderJob(j: FleetJob): string {
  const what = j.kind === 'drain' ? `drain of ${j.host}` : 'rebalance';
  const moved = j.items.filter((i) => i.state === 'moved').length;
  const head = j.dryRun
    ? `${what} (dry run): ${j.items.filter((i) => i.to).length} moves, about ${secs(j.expectedMs)} with ${j.parallel} at once`
    : `${what} ${j.id}: ${j.state}, ${moved} of ${j.items.length} moved`;
  const imbalance = j.imbalance ? `\nimbalance (highest host load less the lowest): ${j.imbalance.before.toFixed(1)} -> ${j.imbalance.after.toFixed(1)} points` : '';
  if (j.items.length === 0) return `${head}\nnothing to move${imbalance}`;
  const rows = j.items.map((i) => [
    i.workload,
    i.from,
    i.to ?? '-',
    bytes(i.memoryBytes),
    i.state,
    i.downtimeMs === null ? `~${i.expectedDowntimeMs} ms` : `${i.downtimeMs} ms`,
    i.state === 'moved' ? '' : i.reason,
  ]);
  return `${head}${imbalance}\n${table(['WORKLOAD', 'FROM', 'TO', 'MEMORY', 'STATE', 'DOWNTIME', 'WHY'], rows)}`;
}

/** How long a drain is followed through a coordinator that does not answer (a failover takes a lease's time). */
const FOLLOW_GAP_MS = 60_000;

const jsonLine = (v: unknown) => `${JSON.stringify(v)}\n`;

/** Follows a job until it ends, showing each move as it changes and the whole job's progress (done of total, bytes, ETA). */
async function follow(nc: NatsConnection, first: FleetJob, json: boolean): Promise<FleetJob> {
  const t0 = Date.now();
  const seen = new Map<string, string>(first.items.map((i) => [i.workload, i.state]));
  let job = first;
  const moving = (j: FleetJob) => j.items.filter((i) => i.to !== null);
  let unanswered: number | null = null;
  while (job.state === 'running') {
    await sleep(300);
    try {
      job = (await askCoordinator(nc, 'fleet', { id: job.id }))[0]!;
      unanswered = null;
    } catch (err) {
      // A coordinator failover: the job goes on under the next leader, which answers within its lease.
      const e = FerryError.from(err);
      unanswered ??= Date.now();
      if (!e.retryable || Date.now() - unanswered > FOLLOW_GAP_MS) throw e;
      continue;
    }
    for (const i of job.items) {
      if (seen.get(i.workload) === i.state) continue;
      seen.set(i.workload, i.state);
      report(job, i, t0, json, moving(job));
    }
  }
  return job;
}

function report(job: FleetJob, i: FleetItem, t0: number, json: boolean, moving: FleetItem[]): void {
  const done = moving.filter((x) => x.state === 'moved' || x.state === 'failed').length;
  const bytesDone = moving.filter((x) => x.state === 'moved').reduce((t, x) => t + x.memoryBytes, 0);
  const total = moving.reduce((t, x) => t + x.memoryBytes, 0);
  const elapsed = Date.now() - t0;
  const etaMs = bytesDone > 0 ? Math.max(0, Math.round((elapsed * (total - bytesDone)) / bytesDone)) : job.expectedMs;
  if (json) {
    const event: FleetEvent = { job: job.id, type: `item.${i.state}`, at: new Date().toISOString(), item: i, progress: { done, total: moving.length, bytesDone, bytesTotal: total, etaMs } };
    process.stderr.write(jsonLine(event));
    return;
  }
  const why = i.state === 'moved' ? (i.downtimeMs === null ? '' : ` (downtime ${i.downtimeMs} ms)`) : i.state === 'migrating' ? ` (migration ${i.migrationId ?? 'starting'})` : ` (${i.reason})`;
  process.stderr.write(`[${secs(elapsed).padStart(8)}] ${done}/${moving.length} done, ${bytes(bytesDone)} of ${bytes(total)}, ETA ${secs(etaMs)}: ${i.workload} ${i.state}${i.to ? ` -> ${i.to}` : ''}${why}\n`);
}

async function runJob(opts: Common, start: (nc: NatsConnection) => Promise<FleetJob>): Promise<void> {
  const job = await withCluster(opts, async (nc) => {
    const first = await start(nc);
    if (!opts.json && !first.dryRun) process.stderr.write(`${renderJob(first)}\n`);
    return first.dryRun ? first : follow(nc, first, !!opts.json);
  });
  printResult(!!opts.json, job, renderJob);
  // A drain succeeded only when its host is empty; a rebalance when every planned move happened.
  if (!job.dryRun && job.state !== 'done') process.exitCode = ExitCode.RolledBack;
}

export function drain(host: string, opts: Common & { parallel: number; bandwidth?: number; dryRun?: boolean; mode?: MigrationMode }): Promise<void> {
  return runJob(opts, (nc) => askCoordinator(nc, 'drain', { host, parallel: opts.parallel, bandwidthMBps: opts.bandwidth ?? null, dryRun: !!opts.dryRun, mode: opts.mode ?? 'precopy' }));
}

export function rebalance(opts: Common & { maxMoves: number; parallel: number; dryRun?: boolean; mode?: MigrationMode }): Promise<void> {
  return runJob(opts, (nc) => askCoordinator(nc, 'rebalance', { maxMoves: opts.maxMoves, parallel: opts.parallel, dryRun: !!opts.dryRun, mode: opts.mode ?? 'precopy' }));
}

export async function drains(id: string | undefined, opts: Common): Promise<void> {
  const jobs = await withCluster(opts, (nc) => askCoordinator(nc, 'fleet', id ? { id } : {}));
  if (id) return printResult(!!opts.json, jobs[0]!, renderJob);
  printResult(!!opts.json, jobs, (js) =>
    js.length === 0
      ? 'no drains or rebalances'
      : table(
          ['ID', 'KIND', 'HOST', 'STATE', 'MOVED', 'STARTED', 'ENDED'],
          js.map((j) => [j.id, j.kind, j.host ?? '-', j.state, `${j.items.filter((i) => i.state === 'moved').length}/${j.items.length}`, j.startedAt, j.endedAt ?? '-']),
        ),
  );
}
