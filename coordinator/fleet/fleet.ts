// Fleet operations as the coordinator's endpoints see them: cordons, `run` without a host,
// drains and rebalances. Plans come from the placement functions (placement.ts, plan-drain.ts,
// plan-rebalance.ts) over the cluster view and every host's workloads; moves are carried out by
// the executor (executor.ts) as ordinary migrations.
import { randomBytes } from 'node:crypto';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { DrainRequest, FleetItem, FleetJob, PlacementPolicy, RebalanceRequest } from '../../shared/fleet.ts';
import type { Logger } from '../../shared/log.ts';
import { MigrateRequest } from '../../shared/migration.ts';
import type { HostView } from '../../shared/protocol.ts';
import type { RunOnHost, WorkloadInfo } from '../../shared/workload.ts';
import type { ClusterView } from '../cluster.ts';
import type { MigrationManager } from '../migrations.ts';
import type { WorkloadDirectory } from '../workloads.ts';
import { Cordons } from './cordons.ts';
import { FleetExecutor } from './executor.ts';
import { describeRefusals, place, type Move, type PlacementHost, type PlacementWorkload } from './placement.ts';
import { planDrain } from './plan-drain.ts';
import { planRebalance } from './plan-rebalance.ts';
import type { FleetStores } from './stores.ts';

/** What a plan assumes a move costs: its memory at this stream rate, plus a fixed cost (preflight, freeze, restore, cleanup). */
const ASSUMED_STREAM_BYTES_PER_S = 200 * 1024 * 1024;
const ASSUMED_FIXED_MS = 1_500;
const DEFAULT_MIGRATION = MigrateRequest.parse({ workload: 'x', to: 'x' });

export class Fleet {
  readonly cordons: Cordons;
  readonly executor: FleetExecutor;
  /** The last CPU time seen of each workload, to turn cumulative usage into a rate. */
  readonly #cpuSamples = new Map<string, { usec: number; at: number }>();

  constructor(
    private readonly stores: FleetStores,
    private readonly cluster: ClusterView,
    private readonly workloads: WorkloadDirectory,
    migrations: MigrationManager,
    private readonly log: Logger,
  ) {
    this.cordons = new Cordons(stores, cluster, log);
    this.executor = new FleetExecutor({
      stores,
      migrations,
      workloads,
      log,
      replan: async (item, job) => {
        const { hosts, workloads: all } = await this.#inputs();
        const w = all.find((x) => x.name === item.workload);
        if (!w) return { reason: `workload "${item.workload}" is no longer running` };
        const p = place(w, hosts, all, { exclude: job.host ? [job.host, item.to ?? ''] : [item.to ?? ''] });
        return 'host' in p ? { to: p.host, reason: p.reason } : { reason: describeRefusals(w, p.refused) };
      },
      // The cap is shared: each of the job's lanes gets its part.
      migrateRequest: (item, job) => ({
        ...DEFAULT_MIGRATION,
        workload: item.workload,
        to: item.to!,
        mode: job.mode,
        ...(job.bandwidthMBps ? { bandwidthMBps: job.bandwidthMBps / Math.max(1, job.parallel) } : {}),
      }),
    });
  }

  hosts(): HostView[] {
    return this.cluster.hosts();
  }

  /** `ferry run`: on the host asked for, or where placement puts it; its placement policy is recorded by name. */
  async run(req: RunOnHost): Promise<WorkloadInfo> {
    const { host: asked, policy, ...run } = req;
    let host = asked;
    if (!host) {
      const { hosts, workloads } = await this.#inputs();
      const w: Omit<PlacementWorkload, 'host'> = { name: run.name, requests: run.requests, limits: run.limits, usage: {}, memoryBytes: run.requests.memoryBytes ?? 0, ...policy };
      const p = place(w, hosts, workloads);
      if (!('host' in p)) throw new FerryError(ErrorCode.Unavailable, describeRefusals(w, p.refused), { retryable: false, details: { refused: p.refused } });
      host = p.host;
      this.log.info({ workload: run.name, host, reason: p.reason }, 'placed');
    } else if (policy.spread && policy.group) {
      const { workloads } = await this.#inputs();
      const peer = workloads.find((w) => w.host === host && w.group === policy.group && w.spread);
      if (peer) throw new FerryError(ErrorCode.InvalidRequest, `--spread: ${peer.name} of group ${policy.group} already runs on ${host}`);
    }
    await this.#savePolicy(run.name, policy);
    return this.workloads.run(host, run);
  }

  /** Stops a workload; its placement policy goes with it. */
  async stop(name: string): Promise<WorkloadInfo> {
    const w = await this.workloads.stop(name);
    await this.stores.policies.delete(name).catch(() => undefined);
    return w;
  }

  /** Plans a drain of `host` (cordoning it first) and, unless a dry run, starts it. */
  async drain(req: DrainRequest): Promise<FleetJob> {
    if (!this.cluster.hosts().some((h) => h.name === req.host)) throw new FerryError(ErrorCode.NotFound, `no host named "${req.host}" in the cluster`);
    if (!req.dryRun) {
      const busy = (await this.executor.list()).find((j) => j.state === 'running' && j.kind === 'drain' && j.host === req.host);
      if (busy) return busy;
      await this.cordons.cordon(req.host, 'drain');
    }
    const { hosts, workloads } = await this.#inputs();
    const plan = planDrain(req.host, hosts, workloads, { parallel: req.parallel });
    const items = [
      ...plan.moves.map((m) => this.#item(m)),
      ...plan.stays.map((s): FleetItem => ({ ...this.#item({ workload: s.workload, from: s.host, to: s.host, memoryBytes: 0, reason: s.reason }), to: null, state: 'stayed' })),
    ];
    return this.#begin({ kind: 'drain', host: req.host, parallel: plan.parallel, bandwidthMBps: req.bandwidthMBps, mode: req.mode, dryRun: req.dryRun, items, imbalance: null });
  }

  /** Plans moves that even out memory and CPU load and, unless a dry run, starts them. */
  async rebalance(req: RebalanceRequest): Promise<FleetJob> {
    const { hosts, workloads } = await this.#inputs();
    const plan = planRebalance(hosts, workloads, { maxMoves: req.maxMoves });
    return this.#begin({ kind: 'rebalance', host: null, parallel: req.parallel, bandwidthMBps: null, mode: req.mode, dryRun: req.dryRun, items: plan.moves.map((m) => this.#item(m)), imbalance: plan.imbalance });
  }

  async #begin(j: Pick<FleetJob, 'kind' | 'host' | 'parallel' | 'bandwidthMBps' | 'mode' | 'dryRun' | 'items' | 'imbalance'>): Promise<FleetJob> {
    const moving = j.items.filter((i) => i.state === 'pending');
    const lanes = Math.max(1, j.parallel);
    const job: FleetJob = {
      ...j,
      id: `${j.kind === 'drain' ? 'd' : 'r'}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
      state: j.dryRun || moving.length === 0 ? (moving.length === 0 && j.items.some((i) => i.state === 'stayed') ? 'incomplete' : 'done') : 'running',
      expectedMs: Math.ceil(moving.reduce((t, i) => t + i.expectedMs, 0) / Math.min(lanes, Math.max(1, moving.length))),
      startedAt: new Date().toISOString(),
      endedAt: j.dryRun || moving.length === 0 ? new Date().toISOString() : null,
    };
    if (job.dryRun) return job;
    return this.executor.start(job);
  }

  #item(m: Move): FleetItem {
    return {
      workload: m.workload,
      from: m.from,
      to: m.to,
      memoryBytes: m.memoryBytes,
      state: 'pending',
      attempts: 0,
      migrationId: null,
      reason: m.reason,
      expectedDowntimeMs: DEFAULT_MIGRATION.downtimeBudgetMs,
      expectedMs: Math.round(ASSUMED_FIXED_MS + (1000 * m.memoryBytes) / ASSUMED_STREAM_BYTES_PER_S),
      downtimeMs: null,
      bytesTransferred: 0,
    };
  }

  async #savePolicy(name: string, policy: PlacementPolicy): Promise<void> {
    const plain = !policy.group && !policy.spread && !policy.pinned && !policy.job;
    if (plain) await this.stores.policies.delete(name).catch(() => undefined);
    else await this.stores.policies.put(name, policy);
  }

  /** The placement's view of the fleet: every host, and every workload with its policy and CPU rate. A decision needs the whole cluster. */
  async #inputs(): Promise<{ hosts: PlacementHost[]; workloads: PlacementWorkload[] }> {
    const hosts = this.cluster.hosts().map((h) => ({ name: h.name, alive: h.alive, cordoned: h.cordoned, facts: h.facts }));
    const listing = await this.workloads.list();
    if (listing.unanswered.length > 0) {
      throw new FerryError(ErrorCode.Unavailable, `cannot plan: ${listing.unanswered.map((u) => `${u.host} did not answer (${u.error})`).join(', ')}`);
    }
    const policies = new Map((await this.stores.policies.all()).map((p) => [p.key, p.value]));
    const now = Date.now();
    const workloads = listing.workloads
      .filter((w) => w.state !== 'exited')
      .map((w): PlacementWorkload => {
        const cpuUsed = this.#cpuRate(w, now);
        return {
          name: w.name,
          host: w.host,
          requests: w.requests,
          limits: w.limits,
          usage: w.usage,
          memoryBytes: w.memoryBytes,
          ...(policies.get(w.name) ?? {}),
          ...(cpuUsed === null ? {} : { cpuUsed }),
        };
      });
    return { hosts, workloads };
  }

  #cpuRate(w: WorkloadInfo, now: number): number | null {
    const usec = w.usage.cpuUsec;
    if (usec === undefined) return null;
    const prev = this.#cpuSamples.get(`${w.host}/${w.name}`);
    if (!prev || now - prev.at >= 1_000) this.#cpuSamples.set(`${w.host}/${w.name}`, { usec, at: now });
    if (!prev || now - prev.at < 1_000 || usec < prev.usec) return null;
    return (usec - prev.usec) / 1000 / (now - prev.at);
  }
}
