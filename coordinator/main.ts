// The ferry coordinator: keeps the cluster view and (from the migration issue on) drives
// migrations through their statechart.
import { parseArgs } from 'node:util';
import { CoordinatorConfig, loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/log.ts';
import { connectNats } from '../shared/nats.ts';
import { ClusterView } from './cluster.ts';
import { AgentClient } from './agents.ts';
import { startCoordinatorService } from './services.ts';
import { WorkloadDirectory } from './workloads.ts';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
if (!values.config) {
  process.stderr.write('usage: ferry-coordinator --config FILE\n');
  process.exit(2);
}
const config = loadConfig(CoordinatorConfig, values.config);
const log = createLogger('ferry-coordinator');

const nc = await connectNats({ servers: config.nats.servers, name: config.nats.name ?? 'ferry-coordinator', persistent: true });
log.info({ server: nc.getServer() }, 'connected to NATS');

const cluster = new ClusterView(nc, config.hostLostAfterMs, log);
await cluster.start();
const workloads = new WorkloadDirectory(cluster, new AgentClient(nc));
await startCoordinatorService(nc, cluster, workloads);
log.info('coordinator ready');

const shutdown = async (signal: string) => {
  log.info({ signal }, 'shutting down');
  cluster.stop();
  await nc.drain().catch(() => undefined);
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
