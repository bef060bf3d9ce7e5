// Registration (durable, in KV) and heartbeats (liveness, on a subject) of one agent.
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { PROTOCOL_VERSION, type Heartbeat, type HostRecord } from '../shared/protocol.ts';
import { encode } from '../shared/rpc.ts';
import { bucketOptions, buckets, subjects } from '../shared/subjects.ts';
import type { FactsSource } from './facts.ts';

export async function register(nc: NatsConnection, host: string, facts: FactsSource): Promise<void> {
  const kv = await new Kvm(nc).create(buckets.hosts, bucketOptions.hosts);
  const record: HostRecord = { protocol: PROTOCOL_VERSION, registeredAt: new Date().toISOString(), facts: facts.current() };
  await kv.put(host, encode(record));
}

/** Publishes a heartbeat now and every intervalMs until the returned stop() is called. */
export function startHeartbeats(nc: NatsConnection, host: string, facts: FactsSource, intervalMs: number): () => void {
  let seq = 0;
  const beat = () => {
    const hb: Heartbeat = { protocol: PROTOCOL_VERSION, host, seq: ++seq, intervalMs, sentAt: new Date().toISOString(), facts: facts.current() };
    if (!nc.isClosed()) nc.publish(subjects.heartbeat(host), encode(hb));
  };
  beat();
  const timer = setInterval(beat, intervalMs);
  return () => clearInterval(timer);
}
