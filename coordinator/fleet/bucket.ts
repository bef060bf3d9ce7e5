// A JetStream KV bucket of one record shape: every read is validated against the schema, and a
// record that fails it is set aside (coordinator/quarantine.ts), never trusted and never fatal.
// Writes go through compare-and-swap where the caller holds a revision.
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { parseRecord } from '../../shared/records.ts';
import { encode } from '../../shared/rpc.ts';
import { streamKeyLister, type KeyLister } from '../kv-keys.ts';
import type { RecordQuarantine } from '../quarantine.ts';

export interface Versioned<T> {
  key: string;
  value: T;
  revision: number;
}

const isCasFailure = (err: unknown): boolean => /wrong last sequence|key exists|10071/.test((err as Error)?.message ?? '');

export class RecordBucket<S extends z.ZodType> {
  constructor(
    readonly name: string,
    private readonly kv: KV,
    private readonly schema: S,
    private readonly quarantine: RecordQuarantine,
    /** Keys this bucket may hold; anything else is set aside. */
    private readonly keyOk: (key: string) => boolean,
    private readonly listKeys: KeyLister,
  ) {}

  static async open<S extends z.ZodType>(
    nc: NatsConnection,
    o: { bucket: string; description: string; history?: number; replicas: number; schema: S; quarantine: RecordQuarantine; keyOk: (key: string) => boolean },
  ): Promise<RecordBucket<S>> {
    const kv = await new Kvm(nc).create(o.bucket, { history: o.history ?? 1, description: o.description, replicas: o.replicas });
    return new RecordBucket(o.bucket, kv, o.schema, o.quarantine, o.keyOk, streamKeyLister(nc, o.bucket));
  }

  async get(key: string): Promise<Versioned<z.infer<S>> | null> {
    const e = await this.kv.get(key);
    return e && e.operation === 'PUT' ? this.#checked(e) : null;
  }

  /** Every valid record (bad ones are set aside on the way). */
  async all(): Promise<Versioned<z.infer<S>>[]> {
    const out: Versioned<z.infer<S>>[] = [];
    for (const k of await this.listKeys()) {
      const v = await this.get(k);
      if (v) out.push(v);
    }
    return out;
  }

  async put(key: string, value: z.input<S>): Promise<number> {
    return this.kv.put(key, encode(this.schema.parse(value)));
  }

  async create(key: string, value: z.input<S>): Promise<number> {
    try {
      return await this.kv.create(key, encode(this.schema.parse(value)));
    } catch (err) {
      if (isCasFailure(err)) throw new FerryError(ErrorCode.Conflict, `${this.name} ${key} exists already`, { cause: err });
      throw err;
    }
  }

  /** Writes only if the record is still at `revision`: a Conflict means another writer won. */
  async update(key: string, value: z.input<S>, revision: number): Promise<number> {
    try {
      return await this.kv.update(key, encode(this.schema.parse(value)), revision);
    } catch (err) {
      if (isCasFailure(err)) throw new FerryError(ErrorCode.Conflict, `${this.name} ${key} was written by another coordinator`, { cause: err });
      throw new FerryError(ErrorCode.Unavailable, `cannot write ${this.name} ${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Follows the bucket until `stopped()`: every current record first, then each change (null: the
   * key was deleted or its record set aside). Watches again after an outage ends the watch.
   */
  async follow(onChange: (key: string, value: z.infer<S> | null) => void, stopped: () => boolean, onError: (err: Error) => void): Promise<void> {
    while (!stopped()) {
      try {
        for await (const e of await this.kv.watch()) {
          if (stopped()) return;
          onChange(e.key, e.operation === 'PUT' ? ((await this.#checked(e))?.value ?? null) : null);
        }
      } catch (err) {
        onError(err as Error);
      }
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }

  async delete(key: string): Promise<void> {
    await this.kv.delete(key);
  }

  async #checked(e: KvEntry): Promise<Versioned<z.infer<S>> | null> {
    const parsed = this.keyOk(e.key) ? parseRecord(this.schema, e.value) : ({ ok: false, reason: `not a key of ${this.name}` } as const);
    if (parsed.ok) return { key: e.key, value: parsed.value, revision: e.revision };
    await this.quarantine.setAside({ bucket: this.name, key: e.key, revision: e.revision, raw: e.value, reason: parsed.reason }, { removeFrom: this.kv, effect: 'skipped' });
    return null;
  }
}
