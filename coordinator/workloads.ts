// Cluster-wide workload operations: names are unique across the cluster, and each request
// goes to the agent of the host that runs (or will run) the workload.
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { allocateAddress } from '../shared/netns.ts';
import type { RunRequest, WorkloadInfo } from '../shared/workload.ts';
import type { AgentClient } from './agents.ts';
import type { ClusterView } from './cluster.ts';

export class WorkloadDirectory {
  /** Addresses handed out to runs still starting (not listed by their agent yet). */
  readonly #pending = new Set<string>();

  constructor(
    private readonly cluster: ClusterView,
    private readonly agents: AgentClient,
  ) {}

  /** Every workload on every live host, sorted by name. */
  async list(): Promise<WorkloadInfo[]> {
    const live = this.cluster.hosts().filter((h) => h.alive);
    const lists = await Promise.all(live.map((h) => this.agents.call(h.name, 'workloads', {}).catch(() => [] as WorkloadInfo[])));
    return lists.flat().sort((a, b) => a.name.localeCompare(b.name));
  }

  async find(name: string): Promise<WorkloadInfo> {
    const found = (await this.list()).filter((w) => w.name === name && w.state !== 'exited');
    if (found.length === 0) throw new FerryError(ErrorCode.NotFound, `no running workload named "${name}"`);
    if (found.length > 1) throw new FerryError(ErrorCode.Internal, `workload "${name}" runs on ${found.map((w) => w.host).join(' and ')}`);
    return found[0]!;
  }

  async run(host: string, req: RunRequest): Promise<WorkloadInfo> {
    this.requireAlive(host);
    const all = await this.list();
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

  requireAlive(host: string): void {
    const h = this.cluster.hosts().find((x) => x.name === host);
    if (!h) throw new FerryError(ErrorCode.InvalidRequest, `unknown host "${host}" (known: ${this.cluster.hosts().map((x) => x.name).join(', ') || 'none'})`);
    if (!h.alive) throw new FerryError(ErrorCode.Unavailable, `host ${host} is not alive`);
  }
}
