// The coordinator's Prometheus metrics (docs/metrics.md). Migration figures come from the events
// of the migrations this coordinator drives (ferry:migration, published by migrations.ts once
// their state is durable), so only the leader counts them and sums across coordinators are
// right. The cluster's state (hosts, drains) is read at scrape time, and exported by the leader
// alone: a standby shows only that it stands by.
import diagnostics_channel from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { FleetJob } from '../shared/fleet.ts';
import type { MigrationEventWire } from '../shared/migration-events.ts';
import type { HostView } from '../shared/protocol.ts';
import { natsConnectedGauge, type StatusSource } from '../shared/metrics/nats.ts';
import type { Outcome } from './machine.ts';

export interface CoordinatorMetricsSources {
  leading: () => boolean;
  /** Migrations this coordinator drives now. */
  inFlight: () => number;
  /** Drains and rebalances this coordinator drives now. */
  fleetJobs: () => FleetJob[];
  hosts: () => HostView[];
  /** Workloads a host said it holds in its last heartbeat (null: not heard since this coordinator started). */
  workloadsOn: (host: string) => number | null;
  nc: StatusSource | null;
}

/** What migrations.ts publishes on ferry:migration. */
export interface MigrationMessage {
  event: MigrationEventWire;
  request: { precopy: boolean; downtimeBudgetMs: number };
}

const OUTCOMES: Outcome[] = ['completed', 'rolledBack', 'failed'];
const DOWNTIME_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const PHASE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** 1 MiB to 16 GiB. */
const BYTES_BUCKETS = exponentialBuckets(2 ** 20, 4, 8);
const ROUND_BUCKETS = [1, 2, 3, 5, 8, 13, 21, 30, 50, 100];

/** A gauge set at scrape time from `fill`, and empty (no series) while this coordinator does not lead. */
function leaderGauge(registry: Registry, leading: () => boolean, o: { name: string; help: string; labelNames: string[] }, fill: (g: Gauge) => void): Gauge {
  return new Gauge({
    ...o,
    registers: [registry],
    collect() {
      this.reset();
      if (leading()) fill(this);
    },
  });
}

export function coordinatorMetrics(src: CoordinatorMetricsSources): { registry: Registry; stop: () => void } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  if (src.nc) natsConnectedGauge(registry, src.nc);
  new Gauge({
    name: 'ferry_coordinator_is_leader',
    help: '1 while this coordinator holds the leader lease (drives migrations and answers requests)',
    registers: [registry],
    collect() {
      this.set(src.leading() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'ferry_migrations_in_progress',
    help: 'Migrations this coordinator drives now (0 on a standby)',
    registers: [registry],
    collect() {
      this.set(src.inFlight());
    },
  });

  const ended = new Counter({ name: 'ferry_migrations_total', help: 'Migrations that ended, by outcome (completed, rolledBack, failed: needs an operator)', labelNames: ['outcome'], registers: [registry] });
  for (const outcome of OUTCOMES) ended.inc({ outcome }, 0);
  const rollbacks = new Counter({
    name: 'ferry_migration_rollbacks_total',
    help: 'Rollbacks started, by the phase they started from and the error code that caused them',
    labelNames: ['phase', 'code'],
    registers: [registry],
  });
  const downtime = new Histogram({
    name: 'ferry_migration_downtime_seconds',
    help: 'Downtime of migrations whose workload was frozen (freeze to running again, anywhere): kind="actual"; kind="predicted": what the switchover rule predicted for it',
    labelNames: ['kind'],
    buckets: DOWNTIME_BUCKETS,
    registers: [registry],
  });
  const overBudget = new Counter({
    name: 'ferry_migration_downtime_over_budget_total',
    help: 'Live migrations that completed with a downtime over their own budget (--downtime-budget)',
    registers: [registry],
  });
  const phases = new Histogram({ name: 'ferry_migration_phase_duration_seconds', help: 'Duration of each migration phase, by phase', labelNames: ['phase'], buckets: PHASE_BUCKETS, registers: [registry] });
  const bytes = new Counter({ name: 'ferry_migration_sent_bytes_total', help: 'Bytes migrations put on the data stream (pre-copy rounds as they end, the final transfer at the end)', registers: [registry] });
  const bytesPer = new Histogram({ name: 'ferry_migration_sent_bytes', help: 'Bytes on the data stream per ended migration', buckets: BYTES_BUCKETS, registers: [registry] });
  const rounds = new Counter({ name: 'ferry_migration_precopy_rounds_total', help: 'Pre-copy rounds of live migrations', registers: [registry] });
  const roundsPer = new Histogram({ name: 'ferry_migration_precopy_rounds', help: 'Pre-copy rounds per ended live migration', buckets: ROUND_BUCKETS, registers: [registry] });

  const leading = src.leading;
  leaderGauge(registry, leading, { name: 'ferry_fleet_jobs_in_progress', help: 'Drains and rebalances in progress, by kind', labelNames: ['kind'] }, (g) => {
    for (const kind of ['drain', 'rebalance']) g.set({ kind }, 0);
    for (const j of src.fleetJobs()) g.inc({ kind: j.kind });
  });
  leaderGauge(registry, leading, { name: 'ferry_fleet_job_items', help: 'Moves of the drains and rebalances in progress, by kind and state (pending, migrating, moved, stayed, failed)', labelNames: ['kind', 'state'] }, (g) => {
    for (const j of src.fleetJobs()) for (const i of j.items) g.inc({ kind: j.kind, state: i.state });
  });
  const perHost = (name: string, help: string, value: (h: HostView) => number | null) =>
    leaderGauge(registry, leading, { name, help, labelNames: ['host'] }, (g) => {
      for (const h of src.hosts()) {
        const v = value(h);
        if (v !== null) g.set({ host: h.name }, v);
      }
    });
  perHost('ferry_host_alive', '1 while the host heartbeats (and its agent answered), 0 once it is lost', (h) => (h.alive ? 1 : 0));
  perHost('ferry_host_cordoned', '1 while the host is cordoned (takes no new workload or migration)', (h) => (h.cordoned ? 1 : 0));
  perHost('ferry_host_memory_bytes', "The host's memory (MemTotal)", (h) => h.facts.memory.totalBytes);
  perHost('ferry_host_memory_available_bytes', "The host's available memory (MemAvailable), as its last heartbeat said", (h) => h.facts.memory.availableBytes);
  perHost('ferry_host_cpus', "The host's CPUs", (h) => h.facts.cpu.count);
  perHost('ferry_host_workloads', 'Workloads the host said it holds in its last heartbeat', (h) => src.workloadsOn(h.name));

  const onMigration = (m: unknown) => {
    const { event: e, request } = m as MigrationMessage;
    const v = e.view;
    if (e.type === 'phase.exited' && e.data.durationMs !== null) phases.observe({ phase: e.data.phase }, e.data.durationMs / 1000);
    else if (e.type === 'rollback.started') rollbacks.inc({ phase: e.data.fromPhase, code: e.data.cause.code });
    else if (e.type === 'round') {
      rounds.inc();
      bytes.inc(e.data.stats.bytesOnWire);
    } else if (e.type === 'migration.ended') {
      const { outcome, result: r } = e.data;
      ended.inc({ outcome });
      // The rounds were counted as they ended (maybe by the coordinator that led then): the rest is the final transfer.
      const inRounds = v.rounds.reduce((n, x) => n + x.bytesOnWire, 0);
      bytes.inc(Math.max(0, r.bytesOnWire - inRounds));
      bytesPer.observe(r.bytesOnWire);
      if (request.precopy) roundsPer.observe(r.rounds);
      if (r.downtimeMs !== null) {
        downtime.observe({ kind: 'actual' }, r.downtimeMs / 1000);
        if (v.predictedDowntimeMs !== null) downtime.observe({ kind: 'predicted' }, v.predictedDowntimeMs / 1000);
        if (request.precopy && outcome === 'completed' && r.downtimeMs > request.downtimeBudgetMs) overBudget.inc();
      }
    }
  };
  diagnostics_channel.subscribe('ferry:migration', onMigration);
  return { registry, stop: () => diagnostics_channel.unsubscribe('ferry:migration', onMigration) };
}
