// The ferry agent: one daemon per host. Registers the host, publishes heartbeats with its
// facts, and serves the engine's operations over NATS.
import { parseArgs } from 'node:util';
import { AgentConfig, loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/log.ts';
import { connectNats, logConnectionStatus } from '../shared/nats.ts';
import type { TransferProgress } from '../shared/migration.ts';
import type { RecordSetAside } from '../shared/records.ts';
import { encode } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';
import { gatherFacts } from './facts.ts';
import { startHeartbeats } from './heartbeat.ts';
import { startAgentService } from './services.ts';
import { Workloads } from './workloads.ts';
import { WorkloadImages } from './jobs/workload-images.ts';
import { MigrationSteps, type DataStreamSettings } from './migration/steps.ts';
import { AbortReconciler } from './migration/reconcile.ts';
import { loadCredentials } from './transfer/auth.ts';
import { recordsChannel } from './quarantine.ts';
import { agentMetrics } from './metrics.ts';
import { startMetricsServer } from '../shared/metrics/server.ts';
import { ensureGuardian } from './engine/process/guardian.ts';
import { startNamespaceThread } from './ffi/netns-thread.ts';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
if (!values.config) {
  process.stderr.write('usage: ferry-agent --config FILE\n');
  process.exit(2);
}
const config = loadConfig(AgentConfig, values.config);
const log = createLogger('ferry-agent', { host: config.name });

// The data stream's identity, read once: a broken one stops the agent here rather than mid-migration.
const stream: DataStreamSettings | null = config.tls ? { credentials: loadCredentials(config.name, config.tls), port: config.stream.port, encrypt: config.stream.encrypt } : null;
if (!stream) log.warn('no tls identity in the config: this agent runs workloads but takes no part in migrations');
else if (!stream.encrypt) log.warn({ port: stream.port }, 'data streams may go unencrypted (stream.encrypt false): only for a fabric every host on it trusts');

const facts = await gatherFacts(config.name, config.address, stream ? { port: stream.port, encrypt: stream.encrypt } : null);
log.info({ facts: facts.current() }, 'host facts gathered');

const nc = await connectNats({ ...config.nats, name: `${config.nats.name ?? 'ferry-agent'}-${config.name}`, persistent: true });
log.info({ server: nc.getServer() }, 'connected to NATS');
void logConnectionStatus(nc, log);
// Record files that failed their schema (agent/quarantine.ts): logged, and published for operators.
recordsChannel.subscribe((m) => {
  const event = { ...(m as RecordSetAside), by: `agent ${config.name}` };
  log.error(event, 'bad record set aside');
  nc.publish(subjects.recordEvents, encode(event));
});

// Started now, not by the first freeze or restore: that fork and that thread would land inside
// a workload's downtime.
ensureGuardian();
startNamespaceThread();
const workloads = new Workloads(config.name, config.stateDir, config.workloadEnv, config.cgroupParent, config.network);
// Before the service: a bad metrics setting stops the agent here, and no step goes uncounted.
const metrics = config.metrics ? await startMetricsServer(agentMetrics({ workloads: () => workloads.list(), nc }).registry, config.metrics) : null;
if (metrics) log.info({ url: metrics.url }, 'metrics served');
const tracking = AgentConfig.shape.dirtyTracking.parse(process.env.FERRY_DIRTY_TRACKING || config.dirtyTracking);
// A round this agent sends reports how far it got; NATS lets it do so under its own name only.
const progress = (p: TransferProgress) => nc.publish(subjects.migrationProgress(config.name), encode(p));
const steps = new MigrationSteps(config.name, config.address, workloads, config.stateDir, config.network, tracking, stream, { progress });
await startAgentService(nc, config.name, facts, workloads, steps, new WorkloadImages(config.name, workloads, config.network));
const heartbeats = startHeartbeats(config.nats, config.name, facts, config.heartbeatMs, workloads.claims(), () => workloads.load());
workloads.onClaims = (c) => heartbeats.claims(c);
log.info('serving; heartbeats started');
// Migrations recorded aborted while this agent was away (or could not be told): settled here.
const reconciler = new AbortReconciler(nc, steps, log);
reconciler.start();

// A workload that exits gives back its namespace and address within a second, not when someone asks.
const reaper = setInterval(() => {
  workloads.reap().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'reaping exited workloads failed'));
}, 1_000);

const shutdown = async (signal: string) => {
  log.info({ signal }, 'shutting down');
  reconciler.stop();
  clearInterval(reaper);
  await heartbeats.stop();
  await metrics?.close();
  await nc.drain().catch(() => undefined);
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
