// An in-memory JetStream KV for unit tests: the operations ferry uses, compare-and-swap included.
import type { KvEntry } from '@nats-io/kv';

/** An in-memory JetStream KV with the operations ferry uses, CAS included. */
export class FakeKv {
  readonly entries = new Map<string, { value: Uint8Array; revision: number }>();
  #seq = 0;
  /** While set, every operation fails as with NATS down. */
  down = false;
  #check(): void {
    if (this.down) throw new Error('TIMEOUT');
  }
  constructor(readonly bucket: string) {}
  async get(key: string): Promise<KvEntry | null> {
    this.#check();
    const e = this.entries.get(key);
    return e ? ({ key, value: e.value, revision: e.revision, operation: 'PUT', bucket: this.bucket } as unknown as KvEntry) : null;
  }
  async put(key: string, value: Uint8Array): Promise<number> {
    this.#check();
    this.entries.set(key, { value, revision: ++this.#seq });
    return this.#seq;
  }
  async create(key: string, value: Uint8Array): Promise<number> {
    this.#check();
    if (this.entries.has(key)) throw new Error('wrong last sequence: key exists');
    return this.put(key, value);
  }
  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.#check();
    if (this.entries.get(key)?.revision !== revision) throw new Error('wrong last sequence: 10071');
    return this.put(key, value);
  }
  async delete(key: string, opts?: { previousSeq?: number }): Promise<void> {
    this.#check();
    if (opts?.previousSeq !== undefined && this.entries.get(key)?.revision !== opts.previousSeq) throw new Error('wrong last sequence');
    this.entries.delete(key);
  }
  /** The KeyLister (coordinator/kv-keys.ts) of this bucket. */
  readonly listKeys = async (): Promise<string[]> => {
    this.#check();
    return [...this.entries.keys()].sort();
  };
}
