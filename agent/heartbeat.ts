// Registration (durable, in KV) and heartbeats (liveness, on a subject) of one agent.
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { PROTOCOL_VERSION, type HostRecord } from '../shared/protocol.ts';
import { encode } from '../shared/rpc.ts';
import { bucketOptions, buckets, subjects } from '../shared/subjects.ts';
import type { FactsSource } from './facts.ts';
import type { WorkloadLoad } from '../shared/facts.ts';

export async function register(nc: NatsConnection, host: string, facts: FactsSource): Promise<void> {
  const kv = await new Kvm(nc).create(buckets.hosts, bucketOptions.hosts);
  const record: HostRecord = { protocol: PROTOCOL_VERSION, registeredAt: new Date().toISOString(), facts: facts.current() };
  await kv.put(host, encode(record));
}

// The heartbeat runs on a worker thread with a NATS connection of its own: checkpointing or
// restoring a large workload keeps the main thread busy for seconds, and a busy agent is not a
// lost one. (A main thread stuck for good is caught by the phases' timeouts instead.) Plain
// JavaScript: a TypeScript loader does not reach worker threads.
const WORKER = `
const { workerData: w, parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { connect } = require(w.natsModule);
const kib = (info, key) => Number(new RegExp('^' + key + ':[ ]+([0-9]+) kB', 'm').exec(info)?.[1] ?? 0) * 1024;
(async () => {
  const nc = await connect({ servers: w.servers, name: w.name, waitOnFirstConnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  let seq = 0;
  // The main thread sends the workloads' load now and then; a busy one sends the last it had.
  let load = null;
  parentPort.on('message', (m) => { load = m; });
  const beat = () => {
    const info = readFileSync('/proc/meminfo', 'utf8');
    const facts = { ...w.facts, memory: { totalBytes: kib(info, 'MemTotal'), availableBytes: kib(info, 'MemAvailable') }, ...(load ? { workloads: load } : {}) };
    nc.publish(w.subject, JSON.stringify({ protocol: w.protocol, host: w.host, seq: ++seq, intervalMs: w.intervalMs, sentAt: new Date().toISOString(), facts }));
  };
  beat();
  setInterval(beat, w.intervalMs);
})();
`;

/**
 * Publishes a heartbeat now and every intervalMs (from a worker thread) until stop() is called;
 * `load` (read on the main thread each interval) puts each workload's cgroup usage in them.
 */
export function startHeartbeats(servers: string[], host: string, facts: FactsSource, intervalMs: number, load?: () => WorkloadLoad[]): () => Promise<void> {
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: {
      natsModule: createRequire(import.meta.url).resolve('@nats-io/transport-node'),
      servers,
      name: `ferry-agent-${host}-heartbeat`,
      subject: subjects.heartbeat(host),
      protocol: PROTOCOL_VERSION,
      host,
      intervalMs,
      facts: facts.current(),
    },
  });
  worker.on('error', (err) => process.stderr.write(`heartbeat worker: ${err.message}\n`));
  const send = () => {
    try {
      if (load) worker.postMessage(load());
    } catch (err) {
      process.stderr.write(`heartbeat load: ${(err as Error).message}\n`);
    }
  };
  send();
  const timer = setInterval(send, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await worker.terminate();
  };
}
