// The leader lease: one coordinator drives migrations at a time. The lease is a KV record
// renewed with compare-and-swap. A coordinator loses it when another took it over (its CAS
// fails) or when it could not renew it before it expired (KV unreachable: NATS down, or this
// process cut off); it then stops driving migrations (`lost`) and keeps trying to take the
// lease again, as a standby does. A lease that expired unclaimed, or one still naming this
// coordinator, is taken back at once (`acquired` again): after an outage the same process
// carries on, without a restart.
import { EventEmitter } from 'node:events';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { LeaseRecord, parseRecord } from '../shared/records.ts';
import { bucketOptions, buckets } from '../shared/subjects.ts';
import type { RecordQuarantine } from './quarantine.ts';

const KEY = 'coordinator';
const enc = new TextEncoder();

type Renewal = 'renewed' | 'taken' | 'unreachable';

export class LeaderLease extends EventEmitter<{ acquired: []; lost: [reason: string] }> {
  #revision = 0;
  #held = false;
  #stopped = false;
  /** When the lease we last wrote expires (our clock). */
  #expiresAt = 0;

  constructor(
    private readonly kv: KV,
    readonly holder: string,
    private readonly ttlMs: number,
    private readonly quarantine: RecordQuarantine | null = null,
  ) {
    super();
  }

  static async open(nc: NatsConnection, holder: string, ttlMs: number, replicas = 1, quarantine: RecordQuarantine | null = null): Promise<LeaderLease> {
    return new LeaderLease(await new Kvm(nc).create(buckets.leases, { ...bucketOptions.leases, replicas }), holder, ttlMs, quarantine);
  }

  get held(): boolean {
    return this.#held;
  }

  /** Waits until this process holds the lease and keeps it, taking it again after losing it, until stop(). */
  async run(): Promise<void> {
    while (!this.#stopped) {
      if (!this.#held) {
        if (await this.#tryAcquire()) {
          this.#held = true;
          this.emit('acquired');
        }
      } else {
        const r = await this.#renew();
        // A failed renewal is not yet a lost lease: KV may come back before it expires.
        if (r === 'taken' || (r === 'unreachable' && Date.now() >= this.#expiresAt)) {
          this.#held = false;
          this.emit('lost', r === 'taken' ? 'another coordinator holds the lease' : 'the lease expired while KV was unreachable');
        }
      }
      await sleep(Math.max(100, Math.floor(this.ttlMs / 3)));
    }
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Lets the lease go without deleting it (deposed by a write conflict): it is sought again. */
  relinquish(): void {
    if (!this.#held) return;
    this.#held = false;
    this.emit('lost', 'relinquished');
  }

  /** Writes the lease with `write` (create or CAS update); only a write that landed moves our expiry. */
  async #write(write: (value: Uint8Array) => Promise<number>): Promise<void> {
    const expiresAt = Date.now() + this.ttlMs;
    this.#revision = await write(enc.encode(JSON.stringify({ holder: this.holder, expiresAt } satisfies LeaseRecord)));
    this.#expiresAt = expiresAt;
  }

  async #tryAcquire(): Promise<boolean> {
    try {
      const e = await this.kv.get(KEY);
      if (!e || e.operation !== 'PUT') {
        await this.#write((v) => this.kv.create(KEY, v));
        return true;
      }
      const parsed = parseRecord(LeaseRecord, e.value);
      if (!parsed.ok) {
        // Nobody holds an unreadable lease: report it, then overwrite it with CAS like an expired one.
        await this.quarantine?.setAside({ bucket: buckets.leases, key: KEY, revision: e.revision, raw: e.value, reason: parsed.reason }, { effect: 'overwritten by the next holder' });
      }
      // Our own lease from before a restart or an outage, an expired one, or an unreadable one: take it over with CAS.
      if (!parsed.ok || parsed.value.holder === this.holder || parsed.value.expiresAt < Date.now()) {
        await this.#write((v) => this.kv.update(KEY, v, e.revision));
        return true;
      }
      return false;
    } catch {
      return false;
    }
  }

  async #renew(): Promise<Renewal> {
    try {
      await this.#write((v) => this.kv.update(KEY, v, this.#revision));
      return 'renewed';
    } catch (err) {
      return /wrong last sequence|10071/.test((err as Error)?.message ?? '') ? 'taken' : 'unreachable';
    }
  }

  /** Gives the lease up so a standby takes over at once (clean shutdown). */
  async release(): Promise<void> {
    this.stop();
    if (!this.#held) return;
    this.#held = false;
    await this.kv.delete(KEY, { previousSeq: this.#revision }).catch(() => undefined);
  }
}
