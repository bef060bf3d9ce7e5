// Cluster-wide workload operations: names are unique across the cluster, and each request
// goes to the agent of the host that runs (or will run) the workload.
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { allocateAddress } from '../shared/netns.ts';
import type { ResourceLimits } from '../shared/resources.ts';
import type { RunRequest, WorkloadInfo, WorkloadListing } from '../shared/workload.ts';
import type { AgentClient } from './agents.ts';
import type { ClusterView } from './cluster.ts';

export class WorkloadDirectory {
  /** Addresses handed out to runs still starting (not listed by their agent yet). */
  readonly #pending = new Set<string>();

  constructor(
    private readonly cluster: ClusterView,
    private readonly agents: AgentClient,
  ) {}

  /** Every workload on every live host, sorted by name, and the live hosts that did not answer. */
  async list(): Promise<WorkloadListing> {
    const live = this.cluster.hosts().filter((h) => h.alive);
    const answers = await Promise.allSettled(live.map((h) => this.agents.call(h.name, 'workloads', {})));
    const listing: WorkloadListing = { workloads: [], unanswered: [] };
    answers.forEach((a, i) => {
      if (a.status === 'fulfilled') listing.workloads.push(...a.value);
      else listing.unanswered.push({ host: live[i]!.name, error: FerryError.from(a.reason).message });
    });
    listing.workloads.sort((a, b) => a.name.localeCompare(b.name));
    return listing;
  }

  /** The whole list, or an error naming the hosts that did not answer: a decision must not rest on part of the cluster. */
  async #complete(purpose: string): Promise<WorkloadInfo[]> {
    const { workloads, unanswered } = await this.list();
    if (unanswered.length > 0) {
      const who = unanswered.map((u) => `${u.host} (${u.error})`).join(', ');
      throw new FerryError(ErrorCode.Unavailable, `cannot ${purpose}: ${unanswered.length === 1 ? 'host' : 'hosts'} ${who} did not answer`);
    }
    return workloads;
  }

  async find(name: string): Promise<WorkloadInfo> {
    const { workloads, unanswered } = await this.list();
    const found = workloads.filter((w) => w.name === name && w.state !== 'exited');
    if (found.length === 0 && unanswered.length > 0) {
      throw new FerryError(ErrorCode.Unavailable, `no live host that answered runs "${name}"; ${unanswered.map((u) => u.host).join(', ')} did not answer`);
    }
    if (found.length === 0) throw new FerryError(ErrorCode.NotFound, `no running workload named "${name}"`);
    if (found.length > 1) throw new FerryError(ErrorCode.Internal, `workload "${name}" runs on ${found.map((w) => w.host).join(' and ')}`);
    return found[0]!;
  }

  async run(host: string, req: RunRequest): Promise<WorkloadInfo> {
    this.requireAlive(host);
    const all = await this.#complete(`check that "${req.name}" and its address are unique`);
    const clash = all.find((w) => w.name === req.name && w.state !== 'exited');
    if (clash) throw new FerryError(ErrorCode.InvalidRequest, `a workload named "${req.name}" already runs on ${clash.host}`);
    // Every workload's address is unique in the cluster: the coordinator is the one place that sees them all.
    const taken = new Set([...all.filter((w) => w.state !== 'exited' && w.address).map((w) => w.address!), ...this.#pending]);
    if (req.address && taken.has(req.address)) throw new FerryError(ErrorCode.InvalidRequest, `address ${req.address} is taken by another workload`);
    const address = req.address ?? allocateAddress(taken);
    if (!address) throw new FerryError(ErrorCode.Unavailable, 'no workload address left in the pool');
    this.#pending.add(address);
    try {
      return await this.agents.call(host, 'run', { ...req, address });
    } finally {
      this.#pending.delete(address);
    }
  }

  async stop(name: string): Promise<WorkloadInfo> {
    const w = await this.find(name);
    return this.agents.call(w.host, 'stop', { name });
  }

  /** New limits for a running workload, applied by the agent of the host that runs it. */
  async update(name: string, limits: ResourceLimits): Promise<WorkloadInfo> {
    const w = await this.find(name);
    return this.agents.call(w.host, 'update', { name, limits });
  }

  requireAlive(host: string): void {
    const h = this.cluster.hosts().find((x) => x.name === host);
    if (!h) throw new FerryError(ErrorCode.InvalidRequest, `unknown host "${host}" (known: ${this.cluster.hosts().map((x) => x.name).join(', ') || 'none'})`);
    if (!h.alive) throw new FerryError(ErrorCode.Unavailable, `host ${host} is not alive`);
  }
}
