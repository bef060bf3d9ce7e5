// The coordinator's view of the cluster: registered hosts (from the hosts bucket) and their
// liveness (from heartbeats). The coordinators write the registrations themselves, from the first
// heartbeat of each agent process: agents may not write KV (shared/permissions.ts). Liveness is judged on the coordinator's own monotonic clock at
// receipt, so agents' wall clocks may disagree without harm.
import { EventEmitter } from 'node:events';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostName } from '../shared/names.ts';
import { Heartbeat, HostRecord, type HostView } from '../shared/protocol.ts';
import { parseRecord } from '../shared/records.ts';
import { decode } from '../shared/rpc.ts';
import { bucketOptions, buckets, heartbeatHost, subjects } from '../shared/subjects.ts';
import { encode } from '../shared/rpc.ts';
import type { Logger } from '../shared/log.ts';
import type { WorkloadClaim } from '../shared/workload.ts';

interface HostState {
  record: HostRecord;
  lastHeartbeat: Heartbeat | null;
  /** performance.now() at the last heartbeat's receipt. */
  lastSeenMono: number | null;
  lastSeenWall: string | null;
  alive: boolean;
  /** The agent process (pid) that has answered a request from this coordinator: only it can be alive. */
  answeredPid: number | null;
  /** hostLost was emitted and the host has not been alive since. */
  lost: boolean;
}

/** Asks a host's agent to answer (its ping endpoint); resolves to the pid that answered. */
export type AgentProbe = (host: string, signal: AbortSignal) => Promise<number>;

export interface ClusterEvents {
  hostAlive: [host: string];
  hostLost: [host: string];
  /** A host record that failed its schema: skipped and left in place (recorded again from the first heartbeat of the host's next agent process). */
  badRecord: [bad: { key: string; revision: number; raw: Uint8Array; reason: string }];
}

export class ClusterView extends EventEmitter<ClusterEvents> {
  readonly #hosts = new Map<string, HostState>();
  #kv: KV | null = null;
  #sub: Subscription | null = null;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  /** Cordoned hosts, as the cordons bucket says (coordinator/fleet/cordons.ts keeps it current). */
  #cordoned: ReadonlySet<string> = new Set();
  readonly #probing = new Map<string, { pid: number; abort: AbortController }>();
  /** When this view began listening: a host not heard from since, for lostAfterMs, is lost too. */
  #startedMono = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly lostAfterMs: number,
    private readonly log: Logger,
    private readonly now: () => number = () => performance.now(),
    private readonly kvReplicas = 1,
    /**
     * Heartbeats reach this coordinator before a just-started agent's endpoints are known across
     * the NATS cluster's routes; a host becomes alive only once its agent process has answered.
     * Without a probe, a heartbeat alone makes it alive.
     */
    private readonly probe: AgentProbe | null = null,
  ) {
    super();
  }

  /** `kv`: the hosts bucket already opened (tests); by default it is opened (created) here. */
  async start(kv?: KV): Promise<void> {
    this.#kv = kv ?? (await new Kvm(this.nc).create(buckets.hosts, { ...bucketOptions.hosts, replicas: this.kvReplicas }));
    this.#startedMono = this.now();
    // The watch delivers every current record first, then each change.
    void this.#watchRecords(this.#kv);
    this.#sub = this.nc.subscribe(subjects.heartbeatAll, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const hb = decode(Heartbeat, msg.data, `heartbeat on ${msg.subject}`);
          // Only agent.<host> may publish on its subject; a payload naming another host is forged.
          if (heartbeatHost(msg.subject) !== hb.host) throw new Error(`heartbeat on ${msg.subject} claims host ${hb.host}`);
          this.#onHeartbeat(hb);
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, 'ignored malformed heartbeat');
        }
      },
    });
    this.#timer = setInterval(() => this.#sweep(), Math.max(100, Math.floor(this.lostAfterMs / 4)));
  }

  stop(): void {
    this.#stopped = true;
    for (const p of this.#probing.values()) p.abort.abort();
    if (this.#timer) clearInterval(this.#timer);
    this.#sub?.unsubscribe();
  }

  hosts(): HostView[] {
    return [...this.#hosts.entries()]
      .sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
      .map(([name, s]) => {
        const facts = s.lastHeartbeat?.facts ?? s.record.facts;
        return { name, alive: s.alive, cordoned: this.#cordoned.has(name), kernel: facts.kernel.release, lastSeen: s.lastSeenWall, registeredAt: s.record.registeredAt, facts };
      });
  }

  /**
   * The names and addresses a host said it holds in its last heartbeat, with the receipt time on
   * this.now()'s clock; null when this coordinator has not heard it say (since it started).
   */
  lastClaims(host: string): { claims: WorkloadClaim[]; seenMono: number } | null {
    const s = this.#hosts.get(host);
    if (!s?.lastHeartbeat?.workloads || s.lastSeenMono === null) return null;
    return { claims: s.lastHeartbeat.workloads, seenMono: s.lastSeenMono };
  }

  setCordoned(hosts: ReadonlySet<string>): void {
    this.#cordoned = hosts;
  }

  isCordoned(host: string): boolean {
    return this.#cordoned.has(host);
  }

  isAlive(host: string): boolean {
    return this.#hosts.get(host)?.alive ?? false;
  }

  /** Lost, as this view already said (hostLost), and not alive again since. */
  isLost(host: string): boolean {
    return this.#hosts.get(host)?.lost ?? false;
  }

  /** Follows the hosts bucket for as long as the view runs, watching again after a NATS outage ends the watch. */
  async #watchRecords(kv: KV): Promise<void> {
    while (!this.#stopped) {
      try {
        for await (const e of await kv.watch()) {
          if (this.#stopped) return;
          if (e.operation === 'PUT') this.#onRecord(e.key, e.revision, e.value);
          else this.#hosts.delete(e.key);
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'watch of the hosts bucket failed; watching again');
      }
      await sleep(1_000);
    }
  }

  #onRecord(key: string, revision: number, value: Uint8Array): void {
    const parsed = parseRecord(HostRecord, value);
    if (!parsed.ok || !HostName.safeParse(key).success) {
      this.emit('badRecord', { key, revision, raw: value, reason: parsed.ok ? 'the key is not a host name' : parsed.reason });
      return;
    }
    const record = parsed.value;
    const prev = this.#hosts.get(key);
    this.#hosts.set(key, prev ? { ...prev, record } : { record, lastHeartbeat: null, lastSeenMono: null, lastSeenWall: null, alive: false, answeredPid: null, lost: false });
  }

  #onHeartbeat(hb: Heartbeat): void {
    const prev = this.#hosts.get(hb.host);
    const pid = hb.facts.agent.pid;
    // A heartbeat before (or without) the KV registration still makes the host known.
    // A new agent process (first heartbeat, or a restart) registers; the KV watch confirms it.
    const fresh = prev?.record.facts.agent.pid !== pid;
    const record: HostRecord = fresh ? { protocol: hb.protocol, registeredAt: hb.sentAt, facts: hb.facts } : prev.record;
    if (fresh) this.#register(record, hb.host);
    const answeredPid = this.probe ? (prev?.answeredPid ?? null) : pid;
    const state: HostState = { record, lastHeartbeat: hb, lastSeenMono: this.now(), lastSeenWall: new Date().toISOString(), alive: false, answeredPid, lost: prev?.lost ?? false };
    this.#hosts.set(hb.host, state);
    if (answeredPid === pid) this.#markAlive(hb.host, prev?.alive ?? false);
    else {
      if (prev?.alive) {
        // Another process took over the host: the old one's answers no longer count.
        this.log.warn({ host: hb.host, pid }, 'host restarted: alive again once its new agent answers');
        state.lost = true;
        this.emit('hostLost', hb.host);
      }
      this.#probeAgent(hb.host, pid);
    }
  }

  #markAlive(host: string, wasAlive: boolean): void {
    const s = this.#hosts.get(host);
    if (!s) return;
    s.alive = true;
    s.lost = false;
    if (!wasAlive) {
      this.log.info({ host }, 'host alive');
      this.emit('hostAlive', host);
    }
  }

  /** Asks a new agent process until it answers, it stops heartbeating, or another process replaces it. */
  #probeAgent(host: string, pid: number): void {
    const probe = this.probe;
    if (!probe || this.#probing.get(host)?.pid === pid) return;
    this.#probing.get(host)?.abort.abort();
    const abort = new AbortController();
    this.#probing.set(host, { pid, abort });
    const current = () => {
      const s = this.#hosts.get(host);
      return !abort.signal.aborted && !this.#stopped && s?.lastHeartbeat?.facts.agent.pid === pid ? s : null;
    };
    void (async () => {
      for (let s = current(); s; s = current()) {
        if (s.lastSeenMono !== null && this.now() - s.lastSeenMono > this.lostAfterMs) break;
        try {
          if ((await probe(host, abort.signal)) === pid) {
            const now = current();
            if (now) {
              now.answeredPid = pid;
              this.#markAlive(host, now.alive);
            }
            break;
          }
        } catch {
          // not reachable yet: ask again shortly
        }
        await sleep(200, undefined, { signal: abort.signal }).catch(() => undefined);
      }
      if (this.#probing.get(host)?.abort === abort) this.#probing.delete(host);
    })();
  }

  #register(record: HostRecord, host: string): void {
    this.#kv?.put(host, encode(record)).catch((err: unknown) => this.log.warn({ host, err: (err as Error).message }, 'could not record host registration'));
  }

  #sweep(): void {
    const t = this.now();
    for (const [name, s] of this.#hosts) {
      if (s.alive && (s.lastSeenMono === null || t - s.lastSeenMono > this.lostAfterMs)) {
        s.alive = false;
        s.lost = true;
        // Back from a silence, even the same process answers again before it counts as alive.
        s.answeredPid = this.probe ? null : s.answeredPid;
        this.log.warn({ host: name }, 'host lost');
        this.emit('hostLost', name);
      } else if (!s.alive && !s.lost && t - (s.lastSeenMono ?? this.#startedMono) > this.lostAfterMs) {
        // Registered, but silent (or never answering) since this view began: lost just the same,
        // for a migration that a new leader takes over must not wait for it.
        s.lost = true;
        this.log.warn({ host: name }, 'host lost (not heard from since this coordinator started)');
        this.emit('hostLost', name);
      }
    }
  }
}
