// `ferry migrate`, `status`, `history`, `watch`, `cancel`, loaded when they run
// (cli/commands/migrations.ts defines them).
import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { MigrationView, RoundStatsWire } from '../../shared/migration.ts';
import { MigrationEventWire, eventForUser } from '../../shared/migration-events.ts';
import { decode } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import type { WorkloadOperation } from '../../shared/job-image.ts';
import { askCoordinator, withCluster } from '../cluster.ts';
import { bytes, describeVerification, table } from '../format.ts';
import { ExitCode, printResult } from '../output.ts';
import { StatusLines } from '../status-lines.ts';

const ms = (v: number | null | undefined): string => (typeof v === 'number' && Number.isFinite(v) ? `${Math.round(v * 10) / 10} ms` : '-');
const rate = (bps: number): string => (bps > 0 ? `${bytes(bps)}/s` : '-');

/** One pre-copy round in a line (events, watch). */
function describeRound(s: RoundStatsWire): string {
  const ratio = s.compressionRatio;
  return (
    `round ${s.round}: ${s.pagesDirty} of ${s.pagesScanned} pages dirty, ${s.pagesSent} sent` +
    `${s.pagesZero ? ` (+${s.pagesZero} zero)` : ''}, ${bytes(s.bytesOnWire)} on the wire${ratio > 1.01 ? ` (${ratio.toFixed(1)}x lz4)` : ''} in ${ms(s.durationMs)}; ` +
    `dirtying ${rate(s.dirtyRateBps)}, link ${rate(s.bandwidthBps)}, predicted downtime ${ms(s.predictedDowntimeMs)}` +
    `${s.tracker ? ` [${s.tracker}]` : ''}${s.throttled ? ` THROTTLED to ${s.throttleCpus ?? '?'} CPU` : ''}`
  );
}

/** The round under way: `round 1: 412.0 MiB of 1.0 GiB (40 %) in 2.1 s`. */
function describeProgress(p: NonNullable<MigrationView['inFlight']>): string {
  const what = p.phase === 'precopy' ? `round ${p.round}` : p.phase === 'postcopy' ? 'post-copy (the workload runs on the destination)' : 'last delta (frozen)';
  const pct = p.pagesTotal > 0 ? ` (${Math.floor((100 * p.pagesDone) / p.pagesTotal)} %)` : '';
  return `${what}: ${p.pagesDone} of ${p.pagesTotal} pages sent${pct}, ${bytes(p.bytesRaw)} in ${ms(p.elapsedMs)}`;
}

function renderView(v: MigrationView): string {
  const lines = [
    `migration ${v.id}: ${v.workload} ${v.from} -> ${v.to}: ${v.outcome ?? v.state}${v.committed ? ' (committed)' : ''}`,
    ...v.phases.map((p) => `  ${p.phase.padEnd(10)} ${p.durationMs === null ? 'running' : `${p.durationMs} ms`}${p.attempts > 1 ? ` (${p.attempts} attempts)` : ''}`),
    `  downtime ${v.downtimeMs ?? '-'} ms${v.rounds.length > 0 ? ` (predicted ${ms(v.predictedDowntimeMs)})` : ''}, total ${v.totalMs ?? '-'} ms, ${bytes(v.bytesTransferred)} transferred after the freeze, ${bytes(v.bytesOnWire)} on the wire in all`,
  ];
  if (v.rounds.length > 0) {
    const throttled = v.rounds.some((r) => r.throttled);
    lines.push(`  live: ${v.rounds.length} pre-copy round(s), tracker ${v.tracker ?? '-'}, switched over: ${v.switchover ?? '-'}${throttled ? '; the workload was THROTTLED (it dirtied memory faster than the link carries it)' : ''}`);
    const t = table(
      ['ROUND', 'SCANNED', 'DIRTY', 'SENT', 'WIRE', 'LZ4', 'TIME', 'DIRTY RATE', 'BANDWIDTH', 'PREDICTED'],
      v.rounds.map((r) => [
        String(r.round),
        String(r.pagesScanned),
        String(r.pagesDirty),
        String(r.pagesSent),
        bytes(r.bytesOnWire),
        `${r.compressionRatio.toFixed(2)}x`,
        ms(r.durationMs),
        rate(r.dirtyRateBps),
        rate(r.bandwidthBps),
        `${ms(r.predictedDowntimeMs)}${r.throttled ? ' (throttled)' : ''}`,
      ]),
    );
    lines.push(...t.split('\n').map((l) => `    ${l}`));
  }
  if (v.inFlight) lines.push(`  now: ${describeProgress(v.inFlight)}`);
  if (v.postcopy) lines.push(...describePostcopy(v.postcopy, v.from, v.to).map((l) => `  ${l}`));
  if (v.verification) lines.push(...describeVerification(v.verification).split('\n').map((l) => `  ${l}`));
  else if (!v.verify) lines.push('  verification before the commit: off (--no-verify)');
  if (v.error) lines.push(`  cause: ${v.error.message} [${v.error.code}, ${v.error.kind} in ${v.error.phase}]`);
  if (v.destinationDiscardPending) lines.push(`  ${v.to} was lost: it discards its half of the migration by itself when it returns`);
  if (v.needsOperator) lines.push('  NEEDS AN OPERATOR: see docs/migration-statechart.md');
  return lines.join('\n');
}

/** A post-copy's state, who holds the whole workload, and what it took. */
function describePostcopy(p: NonNullable<MigrationView['postcopy']>, from: string, to: string): string[] {
  const holder = { source: `only ${from} (the source) holds a complete copy: losing it or the link ends the workload`, destination: `${to} holds every page`, none: 'no host holds a complete copy' }[p.completeCopy];
  const lines = [`post-copy: ${p.state}; ${holder}`];
  if (p.lost) lines.push(`post-copy lost: ${p.lost}`);
  const f = p.figures;
  if (f) {
    const lat = f.faultLatencyMs ? `, fault latency median ${f.faultLatencyMs.median} ms, p99 ${f.faultLatencyMs.p99} ms` : '';
    const backup = f.pagesFromBackup > 0 ? `; ${f.pagesFromBackup} pages taken from the backup on shared storage (the source was lost)` : '';
    lines.push(`post-copy: ${f.pagesOutstanding} pages outstanding at the resume; ${f.demandFaults} demand faults${lat}; pushed ${bytes(f.bytesPushed)}, fetched on demand ${bytes(f.bytesFetched)}${backup}; last page after ${f.lastPageMs} ms`);
  }
  return lines;
}

function renderList(vs: MigrationView[]): string {
  if (vs.length === 0) return 'no migrations';
  return table(
    ['ID', 'WORKLOAD', 'FROM', 'TO', 'STATE', 'ROUNDS', 'DOWNTIME', 'PREDICTED', 'TOTAL', 'BYTES', 'STARTED'],
    vs.map((v) => [v.id, v.workload, v.from, v.to, v.outcome ?? v.state, String(v.rounds.length), v.downtimeMs === null ? '-' : `${v.downtimeMs} ms`, ms(v.predictedDowntimeMs), v.totalMs === null ? '-' : `${v.totalMs} ms`, bytes(v.bytesTransferred), v.startedAt ?? '-']),
  );
}

function describeEvent(e: MigrationEventWire): string | null {
  switch (e.type) {
    case 'phase.entered':
      return `${e.data.phase} ...`;
    case 'phase.exited':
      return `${e.data.phase} done in ${e.data.durationMs ?? '-'} ms`;
    case 'phase.failed':
      return `${e.data.phase} failed: ${e.data.error.message} -> ${e.data.next}`;
    case 'round': {
      const dec = e.data.decision;
      const next = dec.action === 'switchover' ? `switch over (${dec.reason}${dec.postcopy ? ', post-copy' : ''})` : dec.action === 'throttle' ? 'throttle the workload: it dirties memory faster than the link carries it' : 'another round';
      return `${describeRound(e.data.stats)} -> ${next}`;
    }
    case 'migration.ended':
      return `ended: ${e.data.outcome}`;
    case 'phase.attempt':
      return e.data.attempt > 1 ? `${e.data.phase}: attempt ${e.data.attempt}` : null;
    case 'rollback.started':
      return `rolling back: ${e.data.cause.message}`;
    case 'commit.recorded':
      return 'commit recorded: the workload now belongs to the destination';
    case 'transfer.progress':
      return describeProgress(e.data);
    default:
      return e.type;
  }
}

/** The exit code of an ended migration: 0 completed, 3 rolled back (the workload runs on its source), 1 failed. */
const exitFor = (v: MigrationView) => (v.outcome === 'completed' ? ExitCode.Ok : v.outcome === 'rolledBack' ? ExitCode.RolledBack : ExitCode.Failed);

/** One JSON line per event, `at` in ISO 8601 like every time ferry prints. */
const jsonLine = (e: MigrationEventWire) => JSON.stringify(eventForUser(e)) + '\n';

/** Follows one migration's events until it ends; polls as a fallback so a lost event cannot hang us. */
async function follow(nc: NatsConnection, id: string, onEvent: (e: MigrationEventWire) => void, early: MigrationEventWire[] = [], sub = nc.subscribe(subjects.migrationEvents(id))): Promise<MigrationView> {
  for (const e of early) onEvent(e);
  let last: MigrationView | null = early.at(-1)?.view ?? null;
  const check = () =>
    askCoordinator(nc, 'status', { id })
      .then(([v]) => {
        if (v?.outcome) {
          last = v;
          sub.unsubscribe();
        }
      })
      .catch(() => undefined);
  const poll = setInterval(() => void check(), 2_000);
  try {
    if (last?.outcome) return last;
    for await (const m of sub) {
      const e = decode(MigrationEventWire, m.data, 'migration event');
      onEvent(e);
      last = e.view;
      if (e.type === 'migration.ended') break;
    }
  } finally {
    clearInterval(poll);
    sub.unsubscribe();
  }
  if (!last?.outcome) throw new FerryError(ErrorCode.Unavailable, `lost track of migration ${id}`);
  return last;
}

export interface MigrateOptions {
  to: string;
  precopy?: boolean;
  stopAndCopy?: boolean;
  downtimeBudget: number;
  maxRounds: number;
  verify: boolean;
  bandwidth?: number;
  mode?: 'precopy' | 'postcopy' | 'hybrid';
  postcopyBackup?: string;
  json?: boolean;
  nats?: string;
}

export async function migrate(workload: string, opts: MigrateOptions): Promise<void> {
  const view = await runMigration(workload, opts);
  printResult(!!opts.json, view, renderView);
  process.exitCode = exitFor(view);
}

/**
 * `ferry migrate --job J --to h3,h4`: every running workload of the job, one after the other
 * (in the order of their names, to the hosts in turn), each a live migration with its
 * connections; the first that does not complete stops the rest (those moved stay moved).
 */
export async function migrateJob(job: string, opts: MigrateOptions): Promise<void> {
  const hosts = opts.to.split(',').map((h) => h.trim()).filter(Boolean);
  const listing = await withCluster(opts, (nc) => askCoordinator(nc, 'ps', {}));
  const members = listing.workloads.filter((w) => w.job === job && w.state !== 'exited' && w.state !== 'checkpointed').sort((a, b) => a.name.localeCompare(b.name));
  if (members.length === 0) throw new FerryError(ErrorCode.NotFound, `no running workload belongs to job ${job}`, { details: { job } });
  const views: MigrationView[] = [];
  for (const [i, m] of members.entries()) {
    const view = await runMigration(m.name, { ...opts, to: hosts[i % hosts.length]! });
    views.push(view);
    if (exitFor(view) !== 0) break;
  }
  const left = members.slice(views.length).map((m) => m.name);
  printResult(!!opts.json, { job, migrations: views, notAttempted: left }, (v) => [...v.migrations.map(renderView), ...(v.notAttempted.length ? [`not attempted: ${v.notAttempted.join(', ')}`] : [])].join('\n'));
  process.exitCode = Math.max(...views.map(exitFor), left.length ? 3 : 0);
}

async function runMigration(workload: string, opts: MigrateOptions): Promise<MigrationView> {
  if (opts.precopy && opts.stopAndCopy) throw new FerryError(ErrorCode.InvalidRequest, '--precopy and --stop-and-copy exclude each other');
  const request = { workload, to: opts.to, precopy: !opts.stopAndCopy, downtimeBudgetMs: opts.downtimeBudget, maxRounds: opts.maxRounds, verify: opts.verify, ...(opts.bandwidth ? { bandwidthMBps: opts.bandwidth } : {}), ...(opts.mode ? { mode: opts.mode } : {}), ...(opts.postcopyBackup ? { postcopyBackup: path.resolve(opts.postcopyBackup) } : {}) };
  const t0 = Date.now();
  // Progress goes to stderr: human lines, or with --json one JSON event per line (the first names
  // the migration); stdout keeps the final report alone, one JSON document with --json.
  const status = new StatusLines();
  const progress = (e: MigrationEventWire) => {
    if (opts.json) return void process.stderr.write(jsonLine(e));
    const text = describeEvent(e);
    if (!text) return;
    const stamped = `[${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s] ${text}`;
    if (e.type === 'transfer.progress') status.live(stamped);
    else status.line(stamped);
  };
  const view = await withCluster(opts, async (nc) => {
    // Subscribed before asking, so not even the first phase's events are missed.
    const all = nc.subscribe(subjects.migrationEventsAll);
    const early: MigrationEventWire[] = [];
    const collecting = (async () => {
      for await (const m of all) early.push(decode(MigrationEventWire, m.data, 'migration event'));
    })();
    let started: MigrationView;
    try {
      started = await askCoordinator(nc, 'migrate', request);
    } finally {
      all.unsubscribe();
      await collecting;
    }
    const own = early.filter((e) => e.migrationId === started.id);
    if (opts.json) {
      const at = own[0]?.at ?? Date.now();
      process.stderr.write(jsonLine({ migrationId: started.id, type: 'migration.accepted', at, data: { workload: started.workload, from: started.from, to: started.to }, view: started }));
    } else process.stderr.write(`migration ${started.id}: ${started.workload} ${started.from} -> ${started.to}\n`);
    return follow(nc, started.id, progress, own).finally(() => status.end());
  });
  return view;
}

/** Migrations with the workloads' checkpoints and restores (shared/job-image.ts), newest first. */
type Entry = MigrationView | WorkloadOperation;
const startOf = (e: Entry) => e.startedAt ?? '';

async function migrationsAndOperations(nc: NatsConnection, all: boolean): Promise<Entry[]> {
  const [vs, ops] = await Promise.all([askCoordinator(nc, 'status', all ? { all: true } : {}), askCoordinator(nc, 'operations', { all })]);
  return [...vs, ...ops].sort((a, b) => startOf(b).localeCompare(startOf(a)));
}

function renderEntries(es: Entry[]): string {
  const migrations = es.filter((e): e is MigrationView => !('kind' in e));
  const ops = es.filter((e): e is WorkloadOperation => 'kind' in e);
  if (ops.length === 0) return renderList(migrations);
  const opTable = table(
    ['ID', 'WORKLOAD', 'KIND', 'HOST', 'IMAGES', 'STATE', 'SNAPSHOT', 'FROZEN', 'TOTAL', 'BYTES', 'STARTED'],
    ops.map((o) => [o.id, o.workload, o.kind, o.host, o.images, o.error ? `${o.state}: ${o.error.code}` : o.state, o.seq === null ? '-' : String(o.seq), ms(o.frozenMs), ms(o.totalMs), o.pagesBytes === null ? '-' : bytes(o.pagesBytes), o.startedAt]),
  );
  return migrations.length === 0 ? opTable : `${renderList(migrations)}\n\n${opTable}`;
}

export async function status(id: string | undefined, opts: { json?: boolean; nats?: string }): Promise<void> {
  if (id) {
    const vs = await withCluster(opts, (nc) => askCoordinator(nc, 'status', { id }));
    return printResult(!!opts.json, vs[0]!, renderView);
  }
  printResult(!!opts.json, await withCluster(opts, (nc) => migrationsAndOperations(nc, false)), renderEntries);
}

export async function history(opts: { json?: boolean; nats?: string }): Promise<void> {
  printResult(!!opts.json, await withCluster(opts, (nc) => migrationsAndOperations(nc, true)), renderEntries);
}

const describeLine = (e: MigrationEventWire): string | null => {
  const text = describeEvent(e);
  return text ? `${eventForUser(e).at} ${e.migrationId} ${e.view.workload} ${e.view.from}->${e.view.to}: ${text}\n` : null;
};

/**
 * Every migration's events live (until Ctrl-C), or one migration's until it ends. An ended one
 * prints its final state at once; an unknown id is an invalid request (exit 2) at once. With an
 * id, the exit code is the migration's: 0 completed, 3 rolled back, 1 failed.
 */
export async function watch(id: string | undefined, opts: { json?: boolean; nats?: string }): Promise<void> {
  const print = (e: MigrationEventWire) => {
    const line = opts.json ? jsonLine(e) : describeLine(e);
    if (line) process.stdout.write(line);
  };
  await withCluster(opts, async (nc) => {
    if (!id) {
      for await (const m of nc.subscribe(subjects.migrationEventsAll)) print(decode(MigrationEventWire, m.data, 'migration event'));
      return;
    }
    // Subscribed before asking, so that an event between the answer and the subscription is not lost.
    const sub = nc.subscribe(subjects.migrationEvents(id));
    let now: MigrationView;
    try {
      [now] = (await askCoordinator(nc, 'status', { id })) as [MigrationView];
    } catch (err) {
      sub.unsubscribe();
      throw err;
    }
    let view = now;
    if (now.outcome) {
      sub.unsubscribe();
      printResult(!!opts.json, now, renderView);
    } else view = await follow(nc, id, print, [], sub);
    process.exitCode = exitFor(view);
  });
}

export async function cancel(id: string, opts: { json?: boolean; nats?: string }): Promise<void> {
  const v = await withCluster(opts, (nc) => askCoordinator(nc, 'cancel', { id }));
  printResult(!!opts.json, v, (x) => `cancel accepted: ${x.id} rolls back (${x.state})`);
}
