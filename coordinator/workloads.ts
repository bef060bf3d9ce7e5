// Cluster-wide workload operations: names and addresses are unique across the cluster (also
// while a host is lost: what it held may still run there), addresses come from the configured
// workload subnet only, and each request goes to the agent of the host that runs (or will run)
// the workload.
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { ResourceLimits } from '../shared/resources.ts';
import { AddressPool, type InfraAddresses, isIpv4 } from '../shared/subnet.ts';
import type { RunRequest, WorkloadClaim, WorkloadInfo, WorkloadListing } from '../shared/workload.ts';
import type { AgentClient } from './agents.ts';
import type { ClusterView } from './cluster.ts';

/** A heartbeat received this long after a claim was handed out is taken to include it. */
const HEARTBEAT_CATCHES_UP_MS = 1_000;

export interface WorkloadDirectoryOptions {
  /** Where addresses come from; null: workloads get none and `--ip` is refused. */
  pool: AddressPool | null;
  /** The NATS servers' URLs: their addresses are infrastructure, never a workload's. */
  natsServers?: string[];
  now?: () => number;
  /** How long find() keeps asking a live host that did not answer (default 15 s). */
  findRetryMs?: number;
}

export class WorkloadDirectory {
  /** Addresses handed out to runs still starting (not listed by their agent yet). */
  readonly #pending = new Set<string>();
  /**
   * What this coordinator saw each host hold: its last listing, and what it handed out since (or
   * may have: a run whose answer was lost), each stamped with the time. With the host's own
   * heartbeats this keeps a name and address reserved should the host be lost.
   */
  readonly #observed = new Map<string, { claim: WorkloadClaim; at: number }[]>();
  readonly #pool: AddressPool | null;
  readonly #natsServers: string[];
  readonly #now: () => number;
  readonly #findRetryMs: number;
  /** Addresses held for workloads that run nowhere now but will come back with them (checkpointed: coordinator/checkpoints.ts). */
  reservedAddresses: () => Promise<string[]> = async () => [];

  constructor(
    private readonly cluster: ClusterView,
    private readonly agents: AgentClient,
    o: WorkloadDirectoryOptions = { pool: null },
  ) {
    this.#pool = o.pool;
    this.#natsServers = o.natsServers ?? [];
    this.#now = o.now ?? (() => performance.now());
    this.#findRetryMs = o.findRetryMs ?? 15_000;
  }

  /** Every workload on every live host, sorted by name; the live hosts that did not answer; the lost hosts' claims. */
  async list(): Promise<WorkloadListing> {
    const hosts = this.cluster.hosts();
    const live = hosts.filter((h) => h.alive);
    const asked = this.#now();
    const answers = await Promise.allSettled(live.map((h) => this.#listingOf(h.name)));
    const listing: WorkloadListing = { workloads: [], unanswered: [], lost: hosts.filter((h) => !h.alive).map((h) => ({ host: h.name, workloads: this.#lostClaims(h.name) })) };
    answers.forEach((a, i) => {
      const host = live[i]!.name;
      if (a.status === 'fulfilled') {
        listing.workloads.push(...a.value);
        this.#listed(host, a.value, asked);
      } else listing.unanswered.push({ host, error: FerryError.from(a.reason).message });
    });
    listing.workloads.sort((a, b) => a.name.localeCompare(b.name));
    return listing;
  }

  /** One host's workloads (a host is alive only once its agent answered: coordinator/cluster.ts). */
  #listingOf(host: string): Promise<WorkloadInfo[]> {
    return this.agents.call(host, 'workloads', {});
  }

  /**
   * What a lost host may still hold: its last heartbeat's claims, and what this coordinator saw
   * it hold or handed to it after that heartbeat; null when nothing is known.
   */
  #lostClaims(host: string): WorkloadClaim[] | null {
    const hb = this.cluster.lastClaims(host);
    const seen = this.#observed.get(host);
    if (!hb && !seen) return null;
    const newer = (seen ?? []).filter((c) => !hb || c.at > hb.seenMono - HEARTBEAT_CATCHES_UP_MS).map((c) => c.claim);
    const byName = new Map([...(hb?.claims ?? []), ...newer].map((c) => [c.name, c]));
    return [...byName.values()];
  }

  /** The host answered a listing asked at `asked`: that is what it held then, plus what it was handed since. */
  #listed(host: string, ws: WorkloadInfo[], asked: number): void {
    const since = (this.#observed.get(host) ?? []).filter((c) => c.at >= asked);
    const held = ws.filter((w) => w.state !== 'exited').map((w) => ({ claim: { name: w.name, address: w.address }, at: asked }));
    this.#observed.set(host, [...held, ...since]);
  }

  /** The whole list, or an error naming the hosts that did not answer: a decision must not rest on part of the cluster. */
  async #complete(purpose: string): Promise<WorkloadListing> {
    const listing = await this.list();
    const { unanswered } = listing;
    if (unanswered.length > 0) {
      const who = unanswered.map((u) => `${u.host} (${u.error})`).join(', ');
      throw new FerryError(ErrorCode.Unavailable, `cannot ${purpose}: ${unanswered.length === 1 ? 'host' : 'hosts'} ${who} did not answer`);
    }
    return listing;
  }

  async find(name: string, o: { exited?: boolean } = {}): Promise<WorkloadInfo> {
    // A live host that did not answer (busy, or its agent replaced a moment ago) is asked again
    // for a while before the workload is reported unavailable.
    const deadline = Date.now() + this.#findRetryMs;
    let listing = await this.list();
    while (listing.unanswered.length > 0 && !listing.workloads.some((w) => w.name === name) && Date.now() < deadline) {
      await sleep(500);
      listing = await this.list();
    }
    const { workloads, unanswered, lost } = listing;
    const all = workloads.filter((w) => w.name === name);
    const running = all.filter((w) => w.state !== 'exited');
    // An exited one is found only when nothing of that name runs (to stop it: forget it).
    const found = running.length > 0 || !o.exited ? running : all.slice(0, 1);
    const elsewhere = [
      ...unanswered.map((u) => `${u.host} did not answer (${u.error})`),
      ...lost.filter((l) => l.workloads === null || l.workloads.some((c) => c.name === name)).map((l) => `${l.host} is lost`),
    ];
    if (found.length === 0 && elsewhere.length > 0) throw new FerryError(ErrorCode.Unavailable, `no live host that answered runs "${name}"; ${elsewhere.join(', ')}`);
    if (found.length === 0) throw new FerryError(ErrorCode.NotFound, `no running workload named "${name}"`);
    if (found.length > 1) throw new FerryError(ErrorCode.Internal, `workload "${name}" runs on ${found.map((w) => w.host).join(' and ')}`);
    return found[0]!;
  }

  /** Infrastructure addresses the coordinator knows of by itself: hosts' and NATS servers'. */
  #infra(): InfraAddresses {
    const infra: InfraAddresses = new Map();
    for (const url of this.#natsServers) {
      const host = /^(?:[a-z]+:\/\/)?([^:/]+)/.exec(url)?.[1];
      if (host && isIpv4(host)) infra.set(host, `a NATS server's address (${url})`);
    }
    for (const h of this.cluster.hosts()) infra.set(h.facts.address, `host ${h.name}'s address`);
    return infra;
  }

  /** The request's address checked against the subnet and the infrastructure (exit code 2 when refused). */
  #checkRequested(address: string): void {
    if (!this.#pool) throw new FerryError(ErrorCode.InvalidRequest, `--ip ${address}: this cluster has no workload subnet (coordinator config workloadNetwork), so workloads get no address of their own`);
    const why = this.#pool.refusal(address, this.#infra());
    if (why) throw new FerryError(ErrorCode.InvalidRequest, `--ip ${address} refused: ${why}; workload addresses come from ${this.#pool.range}`);
  }

  /**
   * A lost host's claims keep their names and addresses: the workloads may still run there, and
   * will be back when the host is. Refused as unavailable (exit 4): the request may be fine, but
   * only that host can say, and it cannot be reached.
   */
  #checkLost(lost: WorkloadListing['lost'], req: RunRequest): void {
    for (const l of lost) {
      if (l.workloads === null) {
        throw new FerryError(ErrorCode.Unavailable, `cannot check that "${req.name}" and its address are unique: host ${l.host} is lost and this coordinator has not heard what it runs; retry when ${l.host} is back`);
      }
      const byName = l.workloads.find((c) => c.name === req.name);
      if (byName) throw new FerryError(ErrorCode.Unavailable, `workload name "${req.name}" may still be in use on host ${l.host}, which is lost; retry when ${l.host} is back`);
      const byAddress = req.address ? l.workloads.find((c) => c.address === req.address) : undefined;
      if (byAddress) throw new FerryError(ErrorCode.Unavailable, `address ${req.address} may still be in use by "${byAddress.name}" on host ${l.host}, which is lost; retry when ${l.host} is back`);
    }
  }

  async run(host: string, req: RunRequest): Promise<WorkloadInfo> {
    this.requireAlive(host);
    this.requireUncordoned(host, 'new workloads');
    if (req.address) this.#checkRequested(req.address);
    const { workloads: all, lost } = await this.#complete(`check that "${req.name}" and its address are unique`);
    const clash = all.find((w) => w.name === req.name && w.state !== 'exited');
    if (clash) throw new FerryError(ErrorCode.InvalidRequest, `a workload named "${req.name}" already runs on ${clash.host}`);
    // Every workload's address is unique in the cluster: the coordinator is the one place that sees them all.
    const taken = new Set([...all.filter((w) => w.state !== 'exited' && w.address).map((w) => w.address!), ...this.#pending, ...(await this.reservedAddresses())]);
    if (req.address && taken.has(req.address)) throw new FerryError(ErrorCode.InvalidRequest, `address ${req.address} is taken by another workload`);
    this.#checkLost(lost, req);
    for (const l of lost) for (const c of l.workloads ?? []) if (c.address) taken.add(c.address);
    const address = req.address ?? this.#pool?.allocate(taken, this.#infra());
    if (address === null) throw new FerryError(ErrorCode.Unavailable, `no workload address left in ${this.#pool!.range}`);
    const claim: WorkloadClaim = { name: req.name, address: address ?? null };
    if (address) this.#pending.add(address);
    try {
      const w = await this.agents.call(host, 'run', { ...req, ...(address ? { address } : {}) });
      this.#handOut(host, claim);
      return w;
    } catch (err) {
      // An answer that never came may hide a workload that started: keep what it may hold.
      const e = FerryError.from(err);
      if (e.code === ErrorCode.Timeout || e.code === ErrorCode.Unavailable) this.#handOut(host, claim);
      throw err;
    } finally {
      if (address) this.#pending.delete(address);
    }
  }

  #handOut(host: string, claim: WorkloadClaim): void {
    this.#observed.set(host, [...(this.#observed.get(host) ?? []), { claim, at: this.#now() }]);
  }

  async stop(name: string): Promise<WorkloadInfo> {
    const w = await this.find(name, { exited: true });
    const stopped = await this.agents.call(w.host, 'stop', { name });
    this.#observed.set(w.host, (this.#observed.get(w.host) ?? []).filter((c) => c.claim.name !== name));
    return stopped;
  }

  /** New limits for a running workload, applied by the agent of the host that runs it. */
  async update(name: string, limits: ResourceLimits): Promise<WorkloadInfo> {
    const w = await this.find(name);
    return this.agents.call(w.host, 'update', { name, limits });
  }

  /** A cordoned host takes neither new workloads nor incoming migrations: refused as an invalid request (exit 2). */
  requireUncordoned(host: string, what: string): void {
    if (this.cluster.isCordoned(host)) throw new FerryError(ErrorCode.InvalidRequest, `host ${host} is cordoned: it takes no ${what} (\`ferry uncordon ${host}\` lifts it)`);
  }

  requireAlive(host: string): void {
    const h = this.cluster.hosts().find((x) => x.name === host);
    if (!h) throw new FerryError(ErrorCode.InvalidRequest, `unknown host "${host}" (known: ${this.cluster.hosts().map((x) => x.name).join(', ') || 'none'})`);
    if (!h.alive) throw new FerryError(ErrorCode.Unavailable, `host ${host} is not alive`);
  }
}
