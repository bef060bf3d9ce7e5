// The leader lease: one coordinator drives migrations at a time. The lease is a KV record
// renewed with compare-and-swap; a coordinator that fails to renew (another took over after
// expiry, or KV is unreachable past the expiry) steps down at once.
import { EventEmitter } from 'node:events';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { bucketOptions, buckets } from '../shared/subjects.ts';

const KEY = 'coordinator';
const enc = new TextEncoder();
const dec = new TextDecoder();

interface LeaseValue {
  holder: string;
  expiresAt: number;
}

export class LeaderLease extends EventEmitter<{ acquired: []; lost: [reason: string] }> {
  #revision = 0;
  #held = false;
  #stopped = false;

  private constructor(
    private readonly kv: KV,
    readonly holder: string,
    private readonly ttlMs: number,
  ) {
    super();
  }

  static async open(nc: NatsConnection, holder: string, ttlMs: number, replicas = 1): Promise<LeaderLease> {
    return new LeaderLease(await new Kvm(nc).create(buckets.leases, { ...bucketOptions.leases, replicas }), holder, ttlMs);
  }

  get held(): boolean {
    return this.#held;
  }

  /** Waits until this process holds the lease, then keeps renewing it until stop(). */
  async run(): Promise<void> {
    while (!this.#stopped) {
      if (!this.#held) {
        if (await this.#tryAcquire()) {
          this.#held = true;
          this.emit('acquired');
        }
      } else if (!(await this.#renew())) {
        this.#held = false;
        this.emit('lost', 'lease renewal failed');
      }
      await sleep(Math.max(100, Math.floor(this.ttlMs / 3)));
    }
  }

  stop(): void {
    this.#stopped = true;
  }

  #value(): Uint8Array {
    return enc.encode(JSON.stringify({ holder: this.holder, expiresAt: Date.now() + this.ttlMs } satisfies LeaseValue));
  }

  async #tryAcquire(): Promise<boolean> {
    try {
      const e = await this.kv.get(KEY);
      if (!e || e.operation !== 'PUT') {
        this.#revision = await this.kv.create(KEY, this.#value());
        return true;
      }
      const v = JSON.parse(dec.decode(e.value)) as LeaseValue;
      // Our own lease from before a restart, or an expired one: take it over with CAS.
      if (v.holder === this.holder || v.expiresAt < Date.now()) {
        this.#revision = await this.kv.update(KEY, this.#value(), e.revision);
        return true;
      }
      return false;
    } catch {
      return false;
    }
  }

  async #renew(): Promise<boolean> {
    try {
      this.#revision = await this.kv.update(KEY, this.#value(), this.#revision);
      return true;
    } catch {
      return false;
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
