// What the dashboard shows, gathered from what this coordinator already keeps: the cluster view
// (hosts, cordons, heartbeats' CPU counters), the agents' workload listings, the migration
// records (the running statecharts while leading, KV otherwise) and the drain/rebalance records.
// Every coordinator can serve it, leading or standing by.
import type { FleetJob } from '../../shared/fleet.ts';
import { DashboardState, type HostLoad } from '../../shared/dashboard.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { HostView } from '../../shared/protocol.ts';
import type { WorkloadListing } from '../../shared/workload.ts';

/** Where the state comes from (coordinator/main.ts wires the real ones; tests give fakes). */
export interface DashboardSources {
  coordinatorId: string;
  leading(): boolean;
  hosts(): HostView[];
  workloads(): Promise<WorkloadListing>;
  /** Every recorded migration id, oldest first (ids start with their creation time). */
  migrationIds(): Promise<string[]>;
  migration(id: string): Promise<MigrationView>;
  fleet(): Promise<FleetJob[]>;
}

/** Ended migrations kept in the state, newest first (their views never change again). */
export const ENDED_KEPT = 20;

/**
 * CPUs a host's workloads use: the growth of each workload's cgroup CPU time between two
 * samples of the host's heartbeat facts, over the time between them. A workload that appeared,
 * left or restarted its counter between samples counts from the next pair.
 */
export class CpuRates {
  readonly #last = new Map<string, { at: number; usec: Map<string, number>; rate: number | null }>();

  sample(hosts: HostView[], now: number): HostLoad[] {
    return hosts.map((h) => {
      const usec = new Map((h.facts.workloads ?? []).flatMap((w) => (w.usage.cpuUsec === undefined ? [] : [[w.name, w.usage.cpuUsec] as const])));
      const prev = this.#last.get(h.name);
      if (prev && now - prev.at < 1_000) return { host: h.name, cpusUsed: prev.rate };
      let rate: number | null = null;
      if (prev) {
        let grown = 0;
        for (const [name, u] of usec) {
          const before = prev.usec.get(name);
          if (before !== undefined && u >= before) grown += u - before;
        }
        rate = Math.round((grown / 1000 / (now - prev.at)) * 100) / 100;
      }
      this.#last.set(h.name, { at: now, usec, rate });
      return { host: h.name, cpusUsed: rate };
    });
  }
}

export class DashboardStateBuilder {
  /** Ended migrations by id: the view while it is among the newest shown, null after (never read again). */
  readonly #ended = new Map<string, MigrationView | null>();
  readonly #cpu = new CpuRates();

  constructor(
    private readonly src: DashboardSources,
    private readonly now: () => number = Date.now,
  ) {}

  async build(): Promise<DashboardState> {
    const hosts = this.src.hosts();
    const [workloads, migrations, fleet] = await Promise.all([this.src.workloads(), this.migrations(), this.src.fleet()]);
    const state: DashboardState = {
      coordinator: { id: this.src.coordinatorId, leading: this.src.leading() },
      at: new Date(this.now()).toISOString(),
      hosts,
      loads: this.#cpu.sample(hosts, this.now()),
      workloads,
      migrations,
      fleet,
    };
    // What is served is what the page accepts: a shape that drifted fails here, in the coordinator's log.
    return DashboardState.parse(state);
  }

  /** Migrations in flight (newest first), then the newest ended ones. */
  async migrations(): Promise<MigrationView[]> {
    const ids = [...(await this.src.migrationIds())].reverse();
    // Every id not known to have ended is read (it may be in flight), side by side.
    const read = new Map(await Promise.all(ids.filter((id) => !this.#ended.has(id)).map(async (id) => [id, await this.src.migration(id).catch(() => null)] as const)));
    const open: MigrationView[] = [];
    const ended: MigrationView[] = [];
    for (const id of ids) {
      const v = this.#ended.get(id) ?? read.get(id) ?? null;
      if (!v) continue;
      if (v.outcome === null) {
        open.push(v);
        continue;
      }
      const shown = ended.length < ENDED_KEPT;
      if (shown) ended.push(v);
      this.#ended.set(id, shown ? v : null);
    }
    return [...open, ...ended];
  }
}
