// Durable state of the coordinators in JetStream KV: each migration's statechart snapshot
// (written with compare-and-swap on its revision, so a deposed leader cannot overwrite its
// successor), and each migration's commit decision, written once (create-if-absent): the one
// record that says whether a migration committed.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { bucketOptions, buckets } from '../shared/subjects.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

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
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, replicas = 1): Promise<MigrationStore> {
    return new MigrationStore(await new Kvm(nc).create(buckets.migrations, { ...bucketOptions.migrations, replicas }));
  }

  async load(id: string): Promise<{ record: MigrationRecord; revision: number } | null> {
    const e = await this.kv.get(stateKey(id));
    if (!e || e.operation !== 'PUT') return null;
    return { record: JSON.parse(dec.decode(e.value)) as MigrationRecord, revision: e.revision };
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

  async ids(): Promise<string[]> {
    const out: string[] = [];
    for await (const k of await this.kv.keys()) if (k.endsWith('.state')) out.push(k.slice(0, -'.state'.length));
    return out.sort();
  }

  async decision(id: string): Promise<Decision | null> {
    const e = await this.kv.get(decisionKey(id));
    if (!e || e.operation !== 'PUT') return null;
    const v = JSON.parse(dec.decode(e.value)) as { decision: Decision['decision']; at: number };
    return { ...v, revision: e.revision };
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
