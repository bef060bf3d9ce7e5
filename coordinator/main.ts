// The ferry coordinator: keeps the cluster view and drives migrations through their statechart.
// Several may run; the one holding the lease serves requests and drives migrations, the others
// wait and take over (rehydrating every migration in flight) when it goes.
import os from 'node:os';
import { parseArgs } from 'node:util';
import { CoordinatorConfig, loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/log.ts';
import { connectNats } from '../shared/nats.ts';
import { AgentClient } from './agents.ts';
import { ClusterView } from './cluster.ts';
import { LeaderLease } from './lease.ts';
import { MigrationManager } from './migrations.ts';
import { startCoordinatorService } from './services.ts';
import { MigrationStore } from './store.ts';
import { AddressPool } from '../shared/subnet.ts';
import { WorkloadDirectory } from './workloads.ts';
import { untilJetStream } from './jetstream-ready.ts';

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

const cluster = new ClusterView(nc, config.hostLostAfterMs, log, undefined, config.kvReplicas);
await untilJetStream(() => cluster.start(), log);
const agents = new AgentClient(nc);
const pool = config.workloadNetwork ? new AddressPool(config.workloadNetwork) : null;
if (!pool) log.warn('no workloadNetwork in the config: workloads get no address of their own');
const workloads = new WorkloadDirectory(cluster, agents, { pool, natsServers: config.nats.servers });
const store = await untilJetStream(() => MigrationStore.open(nc, config.kvReplicas), log);
const lease = await untilJetStream(() => LeaderLease.open(nc, id, config.leaseTtlMs, config.kvReplicas), log);

// Losing the lease (another coordinator took over, or our writes are refused) means stepping down
// at once: the process exits and its supervisor starts it again as a standby.
const stepDown = (reason: string) => {
  log.error({ reason }, 'no longer the leader: stepping down');
  migrations.stopAll();
  process.exit(1);
};
const migrations = new MigrationManager({ nc, store, cluster, workloads, actorDeps: { agents }, timeouts: config.timeouts, log, onDeposed: stepDown });

lease.on('acquired', () => {
  void (async () => {
    log.info('leader lease acquired');
    // Give the cluster view one heartbeat round so that live agents are not taken for lost.
    await new Promise((r) => setTimeout(r, Math.min(config.hostLostAfterMs, 1_500)));
    const n = await migrations.rehydrate();
    if (n) log.warn({ migrations: n }, 'took over migrations in flight');
    await startCoordinatorService(nc, cluster, workloads, migrations);
    log.info('coordinator ready');
  })().catch((err: unknown) => stepDown(`start as leader failed: ${(err as Error).message}`));
});
lease.on('lost', stepDown);
void lease.run();
log.info('waiting for the leader lease');

const shutdown = async (signal: string) => {
  log.info({ signal }, 'shutting down');
  migrations.stopAll();
  cluster.stop();
  await lease.release();
  await nc.drain().catch(() => undefined);
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
