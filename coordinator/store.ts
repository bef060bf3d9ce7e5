// Durable state of the coordinators in JetStream KV: each migration's statechart snapshot
// (written with compare-and-swap on its revision, so a deposed leader cannot overwrite its
// successor), and each migration's commit decision, written once (create-if-absent): the one
// record that says whether a migration committed. Every record read is validated
// (shared/records.ts); one that fails is set aside (coordinator/quarantine.ts), never trusted.
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { DecisionRecord, MigrationStateRecord, migrationKey, parseRecord } from '../shared/records.ts';
import { bucketOptions, buckets } from '../shared/subjects.ts';
import { streamKeyLister, type KeyLister } from './kv-keys.ts';
import type { RecordQuarantine } from './quarantine.ts';

const enc = new TextEncoder();

export interface MigrationRecord {
  /** MIGRATION_MACHINE_VERSION of the snapshot's writer. */
  machineVersion: number;
  createdAt: string;
  request: { workload: string; from: string; to: string; precopy: boolean; downtimeBudgetMs: number; maxRounds?: number };
  /** actor.getPersistedSnapshot(), as JSON. */
  snapshot: unknown;
  /** True once the statechart reached a final state. */
  final: boolean;
}

export type Decision = { decision: 'committed' | 'aborted'; revision: number; at: number };

const stateKey = (id: string) => `${id}.state`;
const decisionKey = (id: string) => `${id}.decision`;

/** A KV error that means "the revision moved" (someone else wrote) rather than an outage. */
function isCasFailure(err: unknown): boolean {
  const m = (err as Error)?.message ?? '';
  return /wrong last sequence|key exists|10071/.test(m);
}

export class MigrationStore {
  constructor(
    private readonly kv: KV,
    private readonly quarantine: RecordQuarantine,
    private readonly listKeys: KeyLister,
  ) {}

  static async open(nc: NatsConnection, quarantine: RecordQuarantine, replicas = 1): Promise<MigrationStore> {
    const kv = await new Kvm(nc).create(buckets.migrations, { ...bucketOptions.migrations, replicas });
    return new MigrationStore(kv, quarantine, streamKeyLister(nc, buckets.migrations));
  }

  /**
   * The record of a migration, or null when there is none, or none that can be trusted: a record
   * that fails its schema is set aside, and a migration it leaves undecided is recorded aborted,
   * so that its agents release what they hold for it (agent/migration/reconcile.ts) and nothing
   * waits for a record that will never be read again.
   */
  async load(id: string): Promise<{ record: MigrationRecord; revision: number } | null> {
    const e = await this.kv.get(stateKey(id));
    if (!e || e.operation !== 'PUT') return null;
    const parsed = parseRecord(MigrationStateRecord, e.value);
    if (!parsed.ok) {
      await this.#setAside(e, parsed.reason, id);
      return null;
    }
    return { record: parsed.value as MigrationRecord, revision: e.revision };
  }

  /** Sets a migration's state record aside although it passed its schema (it cannot be resumed). */
  async setAside(id: string, reason: string): Promise<void> {
    const e = await this.kv.get(stateKey(id));
    if (e && e.operation === 'PUT') await this.#setAside(e, reason, id);
  }

  async #setAside(e: KvEntry, reason: string, id: string | null): Promise<void> {
    let effect: string | undefined;
    if (id) {
      try {
        const d = await this.decide(id, 'aborted', Date.now());
        effect = d.decision === 'aborted' ? `migration ${id} recorded aborted: its agents release their halves` : `migration ${id} had committed: its destination must be resumed by an operator`;
      } catch (err) {
        effect = `the decision of ${id} could not be recorded: ${(err as Error).message}`;
      }
    }
    await this.quarantine.setAside({ bucket: buckets.migrations, key: e.key, revision: e.revision, raw: e.value, reason }, { removeFrom: this.kv, ...(effect ? { effect } : {}) });
  }

  /** Creates the record of a new migration; fails if the id exists. Returns the revision. */
  async create(id: string, record: MigrationRecord): Promise<number> {
    return this.kv.create(stateKey(id), enc.encode(JSON.stringify(record)));
  }

  /** Overwrites the record only if it is still at `revision`; a Conflict means another writer won. */
  async update(id: string, record: MigrationRecord, revision: number): Promise<number> {
    try {
      return await this.kv.update(stateKey(id), enc.encode(JSON.stringify(record)), revision);
    } catch (err) {
      if (isCasFailure(err)) throw new FerryError(ErrorCode.Conflict, `migration ${id} was written by another coordinator`, { cause: err });
      throw new FerryError(ErrorCode.Unavailable, `cannot persist migration ${id}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Ids of every recorded migration; a key that names none is set aside. */
  async ids(): Promise<string[]> {
    const out: string[] = [];
    const strangers: string[] = [];
    for (const k of await this.listKeys()) {
      const mk = migrationKey(k);
      if (!mk) strangers.push(k);
      else if (mk.kind === 'state') out.push(mk.id);
    }
    for (const k of strangers) {
      const e = await this.kv.get(k).catch(() => null);
      if (e && e.operation === 'PUT') await this.#setAside(e, 'not a key of the migrations bucket (<migration id>.state or .decision)', null);
    }
    return out.sort();
  }

  /**
   * The decision, if one was recorded. An unreadable one is reported and left in place (it still
   * fences the key: no other decision can be written), and the caller gets an error: the
   * migration cannot be settled without an operator.
   */
  async decision(id: string): Promise<Decision | null> {
    const e = await this.kv.get(decisionKey(id));
    if (!e || e.operation !== 'PUT') return null;
    const parsed = parseRecord(DecisionRecord, e.value);
    if (!parsed.ok) {
      await this.quarantine.setAside(
        { bucket: buckets.migrations, key: e.key, revision: e.revision, raw: e.value, reason: parsed.reason },
        { effect: `left in place: the decision of ${id} is unknown; an operator must settle it` },
      );
      throw new FerryError(ErrorCode.BadMessage, `the decision record ${e.key} is unreadable (${parsed.reason})`, { retryable: false });
    }
    return { ...parsed.value, revision: e.revision };
  }

  /**
   * Records the decision unless one exists; returns whichever decision stands. Commit and
   * rollback race through here, and exactly one of them wins.
   */
  async decide(id: string, decision: Decision['decision'], at: number): Promise<Decision> {
    try {
      const revision = await this.kv.create(decisionKey(id), enc.encode(JSON.stringify({ decision, at })));
      return { decision, revision, at };
    } catch (err) {
      if (!isCasFailure(err)) throw new FerryError(ErrorCode.Unavailable, `cannot record decision of ${id}: ${(err as Error).message}`, { cause: err });
      const existing = await this.decision(id);
      if (!existing) throw new FerryError(ErrorCode.Internal, `decision of ${id} exists but cannot be read`);
      return existing;
    }
  }
}

/** Runs `op` again while it fails with Unavailable (KV unreachable for a moment), until `signal` aborts. */
export async function untilKvAnswers<T>(op: () => Promise<T>, signal: AbortSignal, pauseMs = 250): Promise<T> {
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof FerryError && err.code === ErrorCode.Unavailable) || signal.aborted) throw err;
      await sleep(pauseMs, undefined, { signal }).catch(() => {
        throw err;
      });
    }
  }
}
