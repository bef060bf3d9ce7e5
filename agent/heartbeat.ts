// Heartbeats of one agent: liveness and facts on the agent's own subject. The coordinators keep
// the durable registration in KV from them (an agent may not write KV: shared/permissions.ts).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { NatsAccess } from '../shared/config.ts';
import { certificateIdentity } from '../shared/nats.ts';
import { inboxPrefix } from '../shared/permissions.ts';
import { PROTOCOL_VERSION } from '../shared/protocol.ts';
import { subjects } from '../shared/subjects.ts';
import type { WorkloadClaim } from '../shared/workload.ts';
import type { FactsSource } from './facts.ts';
import type { WorkloadLoad } from '../shared/facts.ts';

// The heartbeat runs on a worker thread with a NATS connection of its own: checkpointing or
// restoring a large workload keeps the main thread busy for seconds, and a busy agent is not a
// lost one. (A main thread stuck for good is caught by the phases' timeouts instead.) Plain
// JavaScript: a TypeScript loader does not reach worker threads.
const WORKER = `
const { workerData: w, parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { connect, nkeyAuthenticator } = require(w.natsModule);
const kib = (info, key) => Number(new RegExp('^' + key + ':[ ]+([0-9]+) kB', 'm').exec(info)?.[1] ?? 0) * 1024;
(async () => {
  const security = {};
  // The same check as shared/nats.ts isNatsServer: the server shows a nats.* identity.
  const checkServerIdentity = (_h, cert) => (/^nats\\.[a-z0-9][a-z0-9-]*$/.test(String(cert.subject?.CN)) ? undefined : new Error('not a nats.* server certificate'));
  if (w.tls) Object.assign(security, { tls: { caFile: w.tls.ca, certFile: w.tls.cert, keyFile: w.tls.key, checkServerIdentity }, inboxPrefix: w.inboxPrefix });
  if (w.credentials) security.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(w.credentials, 'utf8').trim()));
  const nc = await connect({ servers: w.servers, name: w.name, waitOnFirstConnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 250, ...security });
  let seq = 0;
  let workloads = w.workloads;
  // The main thread sends the workloads' load now and then; a busy one sends the last it had.
  let load = null;
  const beat = () => {
    const info = readFileSync('/proc/meminfo', 'utf8');
    const facts = { ...w.facts, memory: { totalBytes: kib(info, 'MemTotal'), availableBytes: kib(info, 'MemAvailable') }, ...(load ? { workloads: load } : {}) };
    nc.publish(w.subject, JSON.stringify({ protocol: w.protocol, host: w.host, seq: ++seq, intervalMs: w.intervalMs, sentAt: new Date().toISOString(), facts, workloads }));
  };
  beat();
  setInterval(beat, w.intervalMs);
  // A change of what this host holds goes out at once: a coordinator must know it before the host can be lost.
  parentPort.on('message', (m) => {
    if (m.load) load = m.load;
    if (m.claims) { workloads = m.claims; beat(); }
  });
})();
`;

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
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: {
      natsModule: createRequire(import.meta.url).resolve('@nats-io/transport-node'),
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
    },
  });
  worker.on('error', (err) => process.stderr.write(`heartbeat worker: ${err.message}\n`));
  const send = () => {
    try {
      if (load) worker.postMessage({ load: load() });
    } catch (err) {
      process.stderr.write(`heartbeat load: ${(err as Error).message}
`);
    }
  };
  send();
  const timer = setInterval(send, intervalMs);
  timer.unref();
  return {
    claims: (c) => worker.postMessage({ claims: c }),
    stop: async () => {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}
