// Where the coordinator puts a KV record that failed its schema: a copy in the quarantine bucket
// (its bytes, why, who found it), then, if asked, the original goes from its bucket so that it
// no longer takes part (deleted only at the revision that was read: a record rewritten since
// stays). Each record is reported once, on the log and on subjects.recordEvents. Never throws:
// a bad record must not stop the coordinator, and neither may a failure to set it aside.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../shared/log.ts';
import type { RecordSetAside } from '../shared/records.ts';
import { encode } from '../shared/rpc.ts';
import { bucketOptions, buckets, subjects } from '../shared/subjects.ts';

export interface BadKvRecord {
  bucket: string;
  key: string;
  revision: number;
  raw: Uint8Array;
  reason: string;
}

export interface SetAsideOptions {
  /** The bucket to delete the record from; absent: it stays where it is (reported only). */
  removeFrom?: KV;
  /** What was done about what the record stood for. */
  effect?: string;
}

export class RecordQuarantine {
  readonly #reported = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV | null,
    private readonly log: Logger,
    private readonly by: string,
  ) {}

  static async open(nc: NatsConnection, log: Logger, by: string, replicas = 1): Promise<RecordQuarantine> {
    return new RecordQuarantine(nc, await new Kvm(nc).create(buckets.quarantine, { ...bucketOptions.quarantine, replicas }), log, by);
  }

  /** Sets a bad record aside; returns the quarantine key it was copied to (null if that failed). */
  async setAside(bad: BadKvRecord, opts: SetAsideOptions = {}): Promise<string | null> {
    const id = `${bad.bucket}/${bad.key}@${bad.revision}`;
    let movedTo: string | null = `${bad.bucket}.${bad.key}`;
    try {
      await this.kv?.put(movedTo, encode({ bucket: bad.bucket, key: bad.key, revision: bad.revision, reason: bad.reason, by: this.by, at: Date.now(), raw: Buffer.from(bad.raw).toString('base64') }));
    } catch (err) {
      this.log.error({ bucket: bad.bucket, key: bad.key, err: (err as Error).message }, 'cannot copy a bad record into quarantine');
      movedTo = null;
    }
    // Removed only once a copy is safe, and only the revision that was read.
    if (opts.removeFrom && movedTo) {
      try {
        await opts.removeFrom.delete(bad.key, { previousSeq: bad.revision });
      } catch (err) {
        this.log.warn({ bucket: bad.bucket, key: bad.key, err: (err as Error).message }, 'bad record not removed (rewritten meanwhile, or KV unavailable)');
      }
    }
    if (this.#reported.has(id)) return movedTo;
    this.#reported.add(id);
    const event: RecordSetAside = {
      type: 'record.setAside',
      store: 'kv',
      where: bad.bucket,
      key: bad.key,
      reason: bad.reason,
      movedTo: opts.removeFrom && movedTo ? `${buckets.quarantine}/${movedTo}` : null,
      effect: opts.effect ?? null,
      by: this.by,
      at: Date.now(),
    };
    this.log.error({ bucket: bad.bucket, key: bad.key, revision: bad.revision, reason: bad.reason, movedTo: event.movedTo, effect: event.effect }, 'bad record set aside');
    try {
      this.nc.publish(subjects.recordEvents, encode(event));
    } catch {
      // a closed connection: the log line stands
    }
    return movedTo;
  }
}
