// Heartbeats of one agent: liveness and facts on the agent's own subject. The coordinators keep
// the durable registration in KV from them (an agent may not write KV: shared/permissions.ts).
import type { NatsAccess } from '../shared/config.ts';
import { certificateIdentity } from '../shared/nats.ts';
import { inboxPrefix } from '../shared/permissions.ts';
import { PROTOCOL_VERSION } from '../shared/protocol.ts';
import { subjects } from '../shared/subjects.ts';
import type { WorkloadClaim } from '../shared/workload.ts';
import type { FactsSource } from './facts.ts';
import type { WorkloadLoad } from '../shared/facts.ts';
import type { HeartbeatSettings, HeartbeatUpdate } from './heartbeat-channel.ts';
import { startModuleWorker } from './module-worker.ts';

// The heartbeat runs on a worker thread (heartbeat-worker.ts) with a NATS connection of its own:
// checkpointing or restoring a large workload keeps the main thread busy for seconds, and a busy
// agent is not a lost one. (A main thread stuck for good is caught by the phases' timeouts instead.)

export interface Heartbeats {
  /** The names and addresses this host holds now (sent with this and every later heartbeat). */
  claims(c: WorkloadClaim[]): void;
  stop(): Promise<void>;
}

/**
 * Publishes a heartbeat now and every intervalMs (from a worker thread), and at once when the
 * claims change, until stop() is called; `load` (read on the main thread each interval) puts each
 * workload's cgroup usage in them.
 */
export function startHeartbeats(nats: NatsAccess, host: string, facts: FactsSource, intervalMs: number, claims: WorkloadClaim[], load?: () => WorkloadLoad[]): Heartbeats {
  const settings: HeartbeatSettings = {
    servers: nats.servers,
    tls: nats.tls,
    inboxPrefix: nats.tls ? inboxPrefix(certificateIdentity(nats.tls.cert)) : undefined,
    credentials: nats.credentials,
    name: `ferry-agent-${host}-heartbeat`,
    subject: subjects.heartbeat(host),
    protocol: PROTOCOL_VERSION,
    host,
    intervalMs,
    facts: facts.current(),
    workloads: claims,
  };
  const worker = startModuleWorker(import.meta.url, 'heartbeat-worker', { workerData: settings });
  const post = (u: HeartbeatUpdate) => worker.postMessage(u);
  worker.on('error', (err) => process.stderr.write(`heartbeat worker: ${err.message}\n`));
  const send = () => {
    try {
      if (load) post({ kind: 'load', load: load() });
    } catch (err) {
      process.stderr.write(`heartbeat load: ${(err as Error).message}\n`);
    }
  };
  send();
  const timer = setInterval(send, intervalMs);
  timer.unref();
  return {
    claims: (c) => post({ kind: 'claims', claims: c }),
    stop: async () => {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}
