// The ferry agent: one daemon per host. Registers the host, publishes heartbeats with its
// facts, and serves the engine's operations over NATS.
import { parseArgs } from 'node:util';
import { AgentConfig, loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/log.ts';
import { connectNats } from '../shared/nats.ts';
import { gatherFacts } from './facts.ts';
import { register, startHeartbeats } from './heartbeat.ts';
import { startAgentService } from './services.ts';
import { Workloads } from './workloads.ts';
import { MigrationSteps } from './migration/steps.ts';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
if (!values.config) {
  process.stderr.write('usage: ferry-agent --config FILE\n');
  process.exit(2);
}
const config = loadConfig(AgentConfig, values.config);
const log = createLogger('ferry-agent', { host: config.name });

const facts = await gatherFacts(config.name, config.address);
log.info({ facts: facts.current() }, 'host facts gathered');

const nc = await connectNats({ servers: config.nats.servers, name: `${config.nats.name ?? 'ferry-agent'}-${config.name}`, persistent: true });
log.info({ server: nc.getServer() }, 'connected to NATS');

const workloads = new Workloads(config.name, config.stateDir, config.workloadEnv, config.cgroupParent, config.network);
const tracking = AgentConfig.shape.dirtyTracking.parse(process.env.FERRY_DIRTY_TRACKING || config.dirtyTracking);
const steps = new MigrationSteps(config.name, config.address, workloads, config.stateDir, config.network, tracking);
await startAgentService(nc, config.name, facts, workloads, steps);
await register(nc, config.name, facts);
const stopHeartbeats = startHeartbeats(config.nats.servers, config.name, facts, config.heartbeatMs, () => workloads.load());
log.info('registered; heartbeats started');

const shutdown = async (signal: string) => {
  log.info({ signal }, 'shutting down');
  await stopHeartbeats();
  await nc.drain().catch(() => undefined);
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
