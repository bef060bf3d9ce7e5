// The heartbeat thread (started by heartbeat.ts): a NATS connection of its own, so that
// heartbeats go out while the main thread is busy for seconds checkpointing or restoring.
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { connect, nkeyAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { WorkloadLoad } from '../shared/facts.ts';
import { isNatsServer } from '../shared/nats-identity.ts';
import type { Heartbeat } from '../shared/protocol.ts';
import { parseHeartbeatUpdate, type HeartbeatSettings } from './heartbeat-channel.ts';
import { hostMemory } from './host-memory.ts';

if (!parentPort) throw new Error('heartbeat-worker runs as a worker thread (see heartbeat.ts)');
const port = parentPort;
const settings = workerData as HeartbeatSettings;

function security(): Partial<NodeConnectionOptions> {
  const out: Partial<NodeConnectionOptions> = {};
  if (settings.tls) {
    const { ca, cert, key } = settings.tls;
    out.tls = { caFile: ca, certFile: cert, keyFile: key, checkServerIdentity: isNatsServer } as NodeConnectionOptions['tls'];
    out.inboxPrefix = settings.inboxPrefix;
  }
  if (settings.credentials) out.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(settings.credentials, 'utf8').trim()));
  return out;
}

const nc = await connect({ servers: settings.servers, name: settings.name, waitOnFirstConnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 250, ...security() });
let seq = 0;
let workloads = settings.workloads;
// The main thread sends the workloads' load now and then; a busy one sends the last it had.
let load: WorkloadLoad[] | null = null;

function beat(): void {
  const facts = { ...settings.facts, memory: hostMemory(), ...(load ? { workloads: load } : {}) };
  const hb: Heartbeat = { protocol: settings.protocol, host: settings.host, seq: ++seq, intervalMs: settings.intervalMs, sentAt: new Date().toISOString(), facts, workloads };
  nc.publish(settings.subject, JSON.stringify(hb));
}

beat();
setInterval(beat, settings.intervalMs);
port.on('message', (m: unknown) => {
  const update = parseHeartbeatUpdate(m);
  if (update?.kind === 'load') load = update.load;
  else if (update?.kind === 'claims') {
    workloads = update.claims;
    // A change of what this host holds goes out at once: a coordinator must know it before the host can be lost.
    beat();
  }
});
