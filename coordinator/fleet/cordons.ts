// Cordons: a cordoned host takes no new workload and no incoming migration; what it runs keeps
// running until it is drained. Kept in the cordons bucket, so every coordinator (leader or
// standby) follows the same set, and the cluster view reports it (`ferry hosts`: cordoned).
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { CordonRecord } from '../../shared/fleet.ts';
import type { Logger } from '../../shared/log.ts';
import type { ClusterView } from '../cluster.ts';
import type { FleetStores } from './stores.ts';

export class Cordons {
  readonly #set = new Map<string, CordonRecord>();
  #stopped = false;

  constructor(
    private readonly stores: FleetStores,
    private readonly cluster: ClusterView,
    private readonly log: Logger,
  ) {}

  /** Loads the current cordons, then follows changes for as long as the coordinator runs. */
  async start(): Promise<void> {
    for (const c of await this.stores.cordons.all()) this.#set.set(c.key, c.value);
    this.#publish();
    void this.stores.cordons.follow(
      (host, value) => {
        if (value) this.#set.set(host, value);
        else this.#set.delete(host);
        this.#publish();
      },
      () => this.#stopped,
      (err) => this.log.warn({ err: err.message }, 'watch of the cordons bucket failed; watching again'),
    );
  }

  stop(): void {
    this.#stopped = true;
  }

  async cordon(host: string, reason: string): Promise<{ host: string; cordoned: boolean; changed: boolean }> {
    this.#known(host);
    const changed = !this.#set.has(host);
    const record: CordonRecord = { reason, at: new Date().toISOString() };
    if (changed) await this.stores.cordons.put(host, record);
    this.#set.set(host, this.#set.get(host) ?? record);
    this.#publish();
    if (changed) this.log.info({ host, reason }, 'host cordoned');
    return { host, cordoned: true, changed };
  }

  async uncordon(host: string): Promise<{ host: string; cordoned: boolean; changed: boolean }> {
    this.#known(host);
    const changed = this.#set.has(host);
    if (changed) await this.stores.cordons.delete(host);
    this.#set.delete(host);
    this.#publish();
    if (changed) this.log.info({ host }, 'host uncordoned');
    return { host, cordoned: false, changed };
  }

  #known(host: string): void {
    if (!this.cluster.hosts().some((h) => h.name === host)) throw new FerryError(ErrorCode.NotFound, `no host named "${host}" in the cluster`);
  }

  #publish(): void {
    this.cluster.setCordoned(new Set(this.#set.keys()));
  }
}
