// What the main thread and the heartbeat thread (heartbeat.ts, heartbeat-worker.ts) pass
// between them.
import type { NatsAccess } from '../shared/config.ts';
import type { HostFacts, WorkloadLoad } from '../shared/facts.ts';
import type { Heartbeat } from '../shared/protocol.ts';
import type { WorkloadClaim } from '../shared/workload.ts';

/** The worker's workerData: where to connect, what to publish where, and the heartbeat's fixed part. */
export interface HeartbeatSettings {
  servers: string[];
  tls: NatsAccess['tls'];
  /** Replies go to an inbox of this identity's own (shared/permissions.ts). */
  inboxPrefix: string | undefined;
  credentials: string | undefined;
  /** The connection's name in the server's monitoring. */
  name: string;
  subject: string;
  protocol: Heartbeat['protocol'];
  host: string;
  intervalMs: number;
  /** The facts at start; memory is read again for every heartbeat. */
  facts: HostFacts;
  workloads: WorkloadClaim[];
}

/** From the main thread: the workloads' load now and then, and the host's claims when they change. */
export type HeartbeatUpdate = { kind: 'load'; load: WorkloadLoad[] } | { kind: 'claims'; claims: WorkloadClaim[] };

/**
 * The update in a message, or null. Only its shape is checked: the contents come from the
 * agent's own state, and the coordinators validate every heartbeat they receive.
 */
export function parseHeartbeatUpdate(m: unknown): HeartbeatUpdate | null {
  if (typeof m !== 'object' || m === null) return null;
  const u = m as Record<string, unknown>;
  if (u.kind === 'load' && Array.isArray(u.load)) return { kind: 'load', load: u.load as WorkloadLoad[] };
  if (u.kind === 'claims' && Array.isArray(u.claims)) return { kind: 'claims', claims: u.claims as WorkloadClaim[] };
  return null;
}
