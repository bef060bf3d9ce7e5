// An agent settles its own half of a migration that was recorded aborted, without waiting for a
// coordinator: a rollback does not wait for a lost destination, and a returning agent must not
// keep (or later run) what it held for a migration that will never commit. The decision in KV is
// the authority, never local state: only a recorded `aborted` makes this agent thaw (source) or
// discard (destination), and both are the same fenced steps the coordinator calls.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../shared/log.ts';
import { DecisionRecord, parseRecord } from '../../shared/records.ts';
import { buckets } from '../../shared/subjects.ts';
import type { LocalMigration } from './records.ts';
import type { MigrationSteps } from './steps.ts';

/** A migration still open on this side: not fenced, and its last step here not done. */
export function unsettled(m: LocalMigration): boolean {
  if (m.fenced) return false;
  const last = m.role === 'source' ? 'cleanup' : 'resume';
  return !(`${m.id}/${last}` in m.done);
}

export class AbortReconciler {
  #kv: KV | null = null;
  #timer: NodeJS.Timeout | null = null;
  #busy = false;
  /** Migrations found committed: the coordinator rolls them forward; not asked again. */
  readonly #committed = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly steps: MigrationSteps,
    private readonly log: Logger,
  ) {}

  /** Settles now, then every `intervalMs` (and so again after a NATS outage). */
  start(intervalMs = 3_000): void {
    void this.once();
    this.#timer = setInterval(() => void this.once(), intervalMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** One pass; returns the migrations it settled. Never throws. */
  async once(): Promise<string[]> {
    if (this.#busy) return [];
    this.#busy = true;
    const settled: string[] = [];
    try {
      for (const m of this.steps.records.all()) {
        if (!unsettled(m) || this.#committed.has(m.id)) continue;
        const decision = await this.#decision(m.id);
        if (decision === 'committed') this.#committed.add(m.id);
        if (decision !== 'aborted') continue;
        const step = { migrationId: m.id, workload: m.workload, peer: m.peer };
        try {
          if (m.role === 'source') this.steps.source.thaw(step);
          else await this.steps.destination.discard(step);
          settled.push(m.id);
          this.log.warn({ migration: m.id, role: m.role, workload: m.workload }, m.role === 'source' ? 'migration recorded aborted: workload thawed here' : 'migration recorded aborted: this half discarded');
        } catch (err) {
          this.log.error({ migration: m.id, role: m.role, err: (err as Error).message }, 'cannot settle an aborted migration; trying again');
        }
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read migration decisions (NATS or KV unavailable); trying again');
    } finally {
      this.#busy = false;
    }
    return settled;
  }

  /** The recorded decision; null when there is none yet, or none that can be read. */
  async #decision(id: string): Promise<DecisionRecord['decision'] | null> {
    // Direct get names the key in its API subject, which is all an agent may ask for
    // (decisionRead in shared/permissions.ts): never a write, never another key.
    this.#kv ??= await new Kvm(this.nc).open(buckets.migrations, { allow_direct: true });
    const e = await this.#kv.get(`${id}.decision`);
    if (!e || e.operation !== 'PUT') return null;
    const parsed = parseRecord(DecisionRecord, e.value);
    if (!parsed.ok) {
      this.log.error({ bucket: buckets.migrations, key: e.key, reason: parsed.reason }, 'unreadable decision record: left alone');
      return null;
    }
    return parsed.value.decision;
  }
}
