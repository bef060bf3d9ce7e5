// The ferry coordinator: keeps the cluster view and drives migrations through their statechart.
// Several may run; the one holding the lease serves requests and drives migrations, the others
// wait and take over (rehydrating every migration in flight) when it goes. A NATS outage is
// waited out: the connection is retried forever, and the lease taken back afterwards.
import os from 'node:os';
import { parseArgs } from 'node:util';
import { CoordinatorConfig, loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/log.ts';
import { connectNats, logConnectionStatus } from '../shared/nats.ts';
import { buckets } from '../shared/subjects.ts';
import { AgentClient } from './agents.ts';
import { Fleet } from './fleet/fleet.ts';
import { openFleetStores } from './fleet/stores.ts';
import { ClusterView } from './cluster.ts';
import { LeaderLease } from './lease.ts';
import { MigrationManager } from './migrations.ts';
import { startCoordinatorService } from './services.ts';
import { followProgress } from './progress.ts';
import { CheckpointDirectory } from './checkpoints.ts';
import { JobCheckpoints } from './job-checkpoints.ts';
import { openCheckpointRecords } from './fleet/stores.ts';
import { RecordQuarantine } from './quarantine.ts';
import { MigrationStore } from './store.ts';
import { AddressPool } from '../shared/subnet.ts';
import { WorkloadDirectory } from './workloads.ts';
import { untilJetStream } from './jetstream-ready.ts';
import { CoordinatorDashboard } from './dashboard/dashboard.ts';
import { coordinatorMetrics } from './metrics.ts';
import { startMetricsServer } from '../shared/metrics/server.ts';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
if (!values.config) {
  process.stderr.write('usage: ferry-coordinator --config FILE\n');
  process.exit(2);
}
const config = loadConfig(CoordinatorConfig, values.config);
const id = config.id ?? `${os.hostname()}-${process.pid}`;
const log = createLogger('ferry-coordinator', { coordinator: id });

const nc = await connectNats({ ...config.nats, name: config.nats.name ?? `ferry-coordinator-${id}`, persistent: true });
log.info({ server: nc.getServer() }, 'connected to NATS');
void logConnectionStatus(nc, log);

const quarantine = await untilJetStream(() => RecordQuarantine.open(nc, log, `coordinator ${id}`, config.kvReplicas), log);
const agents = new AgentClient(nc);
const pingAgent = async (host: string, signal: AbortSignal) => (await agents.call(host, 'ping', {}, { timeoutMs: 2_000, signal })).pid;
const cluster = new ClusterView(nc, config.hostLostAfterMs, log, undefined, config.kvReplicas, pingAgent);
cluster.on('badRecord', (bad) => void quarantine.setAside({ bucket: buckets.hosts, ...bad }, { effect: "skipped: the host is known from its heartbeats, and recorded again from its agent's next start" }));
await untilJetStream(() => cluster.start(), log);
const pool = config.workloadNetwork ? new AddressPool(config.workloadNetwork) : null;
if (!pool) log.warn('no workloadNetwork in the config: workloads get no address of their own');
const workloads = new WorkloadDirectory(cluster, agents, { pool, natsServers: config.nats.servers });
const store = await untilJetStream(() => MigrationStore.open(nc, quarantine, config.kvReplicas), log);
const lease = await untilJetStream(() => LeaderLease.open(nc, id, config.leaseTtlMs, config.kvReplicas, quarantine), log);

// Leading: the service answers and migrations are driven. Losing the lease (another coordinator
// took over, a write found its record moved on, or NATS was unreachable until the lease expired)
// means standing by at once: migrations stop being driven (their records stay, for whoever leads
// next), the service stops answering, and the lease is sought again. Nothing exits: after an
// outage this process takes the lease back and rehydrates the migrations it was driving.
let service: Awaited<ReturnType<typeof startCoordinatorService>> | null = null;
let leading: Promise<void> = Promise.resolve();
const standBy = (reason: string) => {
  log.error({ reason }, 'no longer the leader: standing by');
  migrations.stopAll();
  fleet.executor.stopAll();
  const s = service;
  service = null;
  void s?.stop().catch(() => undefined);
};
const migrations = new MigrationManager({
  nc,
  store,
  cluster,
  workloads,
  actorDeps: { agents },
  timeouts: config.timeouts,
  log,
  // Another coordinator wrote a migration's record: let the lease go (standing by, via `lost`).
  onDeposed: () => lease.relinquish(),
});
// Sources report how far a round got; only migrations this coordinator drives take the reports.
const progress = followProgress(nc, migrations, log);

const fleetStores = await untilJetStream(() => openFleetStores(nc, quarantine, config.kvReplicas), log);
const fleet = new Fleet(fleetStores, cluster, workloads, migrations, log);
await untilJetStream(() => fleet.cordons.start(), log);
const checkpointRecords = await untilJetStream(() => openCheckpointRecords(nc, quarantine, config.kvReplicas), log);
const checkpoints = new CheckpointDirectory(checkpointRecords, workloads, migrations, cluster, agents);
workloads.reservedAddresses = () => checkpoints.reservedAddresses();
const jobCheckpoints = new JobCheckpoints(fleetStores.policies, workloads, checkpoints, agents, cluster);
// Leading or not, a coordinator serves its dashboard (read-only; logins through the leader's
// `dashboard` endpoint). One that cannot start is logged and left out: migrations go on without it.
const dashboard = await CoordinatorDashboard.start(config, { id, nc, lease, cluster, workloads, migrations, store, fleet, log }).catch((err: Error) => {
  log.error({ err: err.message }, 'dashboard not served');
  return null;
});

// Before the lease is sought: a bad metrics setting stops the coordinator here, and no migration goes uncounted.
const metrics = config.metrics
  ? await startMetricsServer(
      coordinatorMetrics({
        leading: () => lease.held,
        inFlight: () => migrations.inFlight,
        fleetJobs: () => fleet.executor.driving(),
        hosts: () => cluster.hosts(),
        workloadsOn: (host) => cluster.lastClaims(host)?.claims.length ?? null,
        nc,
      }).registry,
      config.metrics,
    )
  : null;
if (metrics) log.info({ url: metrics.url }, 'metrics served');

lease.on('acquired', () => {
  leading = leading.then(async () => {
    log.info('leader lease acquired');
    // Give the cluster view one heartbeat round so that live agents are not taken for lost.
    await new Promise((r) => setTimeout(r, Math.min(config.hostLostAfterMs, 1_500)));
    // KV may be failing for a moment (a NATS node just went and its streams elect new leaders):
    // the takeover is tried again while the lease is ours. Letting the lease go instead would only
    // stop what was already taken over and start it again. Each step skips what already runs.
    for (let attempt = 1; lease.held; attempt++) {
      try {
        const n = await migrations.rehydrate();
        if (n) log.warn({ migrations: n }, 'took over migrations in flight');
        const jobs = await fleet.executor.resumeAll();
        if (jobs) log.warn({ jobs }, 'took over drains and rebalances in flight');
        if (!lease.held) break;
        service = await startCoordinatorService(nc, { workloads, migrations, fleet, checkpoints, jobs: jobCheckpoints, dashboard });
        log.info({ attempt }, 'coordinator ready');
        return;
      } catch (err) {
        log.error({ err: (err as Error).message, attempt }, 'start as leader failed: trying again');
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  });
});
lease.on('lost', (reason) => {
  leading = leading.then(() => standBy(reason));
});
void lease.run();
log.info('waiting for the leader lease');

const shutdown = async (signal: string) => {
  log.info({ signal }, 'shutting down');
  migrations.stopAll();
  progress.unsubscribe();
  fleet.executor.stopAll();
  fleet.cordons.stop();
  await dashboard?.stop();
  cluster.stop();
  await lease.release();
  await metrics?.close();
  await nc.drain().catch(() => undefined);
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
