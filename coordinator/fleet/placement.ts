// Where a workload can run: which hosts may take it, why the others may not, and the best of
// them. Pure (no NATS, no clock): the coordinator gathers hosts and workloads, this decides, for
// `ferry run` without --host, drains (plan-drain.ts) and rebalances (plan-rebalance.ts).
//
// A host's books are kept in a Ledger of running totals, so a plan costs O(hosts) per decision
// whatever the number of workloads, and each planned move counts against its destination (and
// for its source) in the decisions after it.
import type { HostFacts } from '../../shared/facts.ts';
import type { ResourceLimits, ResourceRequests, ResourceUsage } from '../../shared/resources.ts';
import { incompatibilities, memoryNeeded } from '../compatibility.ts';

export interface PlacementHost {
  name: string;
  alive: boolean;
  cordoned: boolean;
  facts: HostFacts;
}

export interface PlacementWorkload {
  name: string;
  host: string;
  requests: ResourceRequests;
  limits: ResourceLimits;
  usage: ResourceUsage;
  /** Resident memory of the process tree: what a migration copies. */
  memoryBytes: number;
  group?: string | null;
  /** Workloads of the same group on different hosts (anti-affinity). */
  spread?: boolean;
  /** Never moved automatically. */
  pinned?: boolean;
  /** CPUs it uses now (the coordinator's rate from two heartbeats' cpuUsec); absent: its CPU request stands for it. */
  cpuUsed?: number;
}

export interface Move {
  workload: string;
  from: string;
  to: string;
  /** What the migration copies (measured resident memory). */
  memoryBytes: number;
  reason: string;
}

export type RefusalKind = 'lost' | 'cordoned' | 'excluded' | 'no-data-stream' | 'incompatible' | 'spread' | 'memory' | 'cpu' | 'available';
export interface Refusal {
  host: string;
  kind: RefusalKind;
  reason: string;
}

export interface PlaceOptions {
  /** Hosts it must not go to (the drained host, the one it runs on). */
  exclude?: ReadonlySet<string> | readonly string[];
  /** Facts of the host it runs on: given for a migration (compatibility, data stream), absent for a new workload. */
  source?: HostFacts;
}

/**
 * score: the share of the host's memory for requests still free once it is placed there (0..1);
 * hosts within the same whole percentage point are ordered by CPU load, workload count, name.
 */
export type Placed = { host: string; score: number; reason: string };
export type Placement = Placed | { refused: Refusal[] };

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** Kept free of workloads' requests on every host: for the kernel, the agent and page cache. */
export const MEMORY_HEADROOM = { fraction: 0.1, floorBytes: 256 * MiB } as const;

const formatBytes = (n: number): string => (Math.abs(n) >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${Math.round(n / MiB)} MiB`);
const formatCpus = (milli: number): string => `${+(milli / 1000).toFixed(3)}`;

/** Memory that workloads may reserve on a host: its total less the headroom. */
export function memoryCapacity(f: HostFacts): number {
  const total = f.memory.totalBytes;
  return Math.max(0, Math.floor(total - Math.max(total * MEMORY_HEADROOM.fraction, MEMORY_HEADROOM.floorBytes)));
}

/** Resident memory as measured (the tree's, else its cgroup's): what a migration copies. */
export function measuredMemory(w: Pick<PlacementWorkload, 'memoryBytes' | 'usage'>): number {
  return Math.ceil(w.memoryBytes > 0 ? w.memoryBytes : (w.usage.memoryBytes ?? 0));
}

/**
 * Memory a workload takes on its host, both for fit and for load: the larger of its request and
 * its measured memory. Its request is reserved for it; what it uses beyond it is taken all the
 * same; a workload without a request counts what it uses (never zero, or a drain could stack
 * unrequested workloads onto one host). The agent's own admission counts requests only, so a
 * plan that fits here is admitted there.
 */
export function memoryWeight(w: Pick<PlacementWorkload, 'memoryBytes' | 'usage' | 'requests'>): number {
  return Math.max(w.requests.memoryBytes ?? 0, measuredMemory(w));
}

// CPUs are kept in integer thousandths so that running totals never drift from a fresh sum
// (a plan applied and planned again must see exactly the numbers the first plan ended with).
const milli = (cpus: number | undefined): number => Math.round((cpus ?? 0) * 1000);
/** CPU requests must fit within the host's CPUs (as the agent admits them). */
export const cpuRequestMilli = (w: Pick<PlacementWorkload, 'requests'>): number => milli(w.requests.cpus);
/** CPU load for scoring and balance: what it uses, or its request when that is more. */
export const cpuLoadMilli = (w: Pick<PlacementWorkload, 'requests' | 'cpuUsed'>): number => Math.max(milli(w.requests.cpus), milli(w.cpuUsed));

/** Workloads in first-fit-decreasing order: most memory first, then most CPU, then by name. */
export function largestFirst(a: PlacementWorkload, b: PlacementWorkload): number {
  return memoryWeight(b) - memoryWeight(a) || cpuLoadMilli(b) - cpuLoadMilli(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

interface GroupOnHost {
  members: Set<string>;
  spread: number;
}

/** One host's books: capacity and the running totals of what is (or is planned to be) on it. */
export interface Slot {
  host: PlacementHost;
  memoryCapacity: number;
  cpuCapacityMilli: number;
  reservedBytes: number;
  /** The host's available memory as reported, less what planned moves bring, plus what they take away. */
  availableBytes: number;
  cpuRequestMilli: number;
  cpuLoadMilli: number;
  workloads: Map<string, PlacementWorkload>;
  groups: Map<string, GroupOnHost>;
}

export class Ledger {
  readonly slots = new Map<string, Slot>();
  readonly #compat = new Map<string, string[]>();

  constructor(hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[]) {
    for (const h of hosts)
      this.slots.set(h.name, {
        host: h,
        memoryCapacity: memoryCapacity(h.facts),
        cpuCapacityMilli: h.facts.cpu.count * 1000,
        reservedBytes: 0,
        availableBytes: h.facts.memory.availableBytes,
        cpuRequestMilli: 0,
        cpuLoadMilli: 0,
        workloads: new Map(),
        groups: new Map(),
      });
    // Workloads on a host that is not listed are not counted anywhere: nothing can be planned there.
    for (const w of workloads) {
      const s = this.slots.get(w.host);
      if (s) this.#add(s, w);
    }
  }

  /** The workload now runs on `to` in the plan: both hosts' books change, the available memory by what the move copies. */
  move(w: PlacementWorkload, to: string): PlacementWorkload {
    const from = this.slots.get(w.host);
    const dst = this.slots.get(to);
    if (!dst) throw new Error(`placement: no host ${to}`);
    if (from) {
      this.#remove(from, w);
      from.availableBytes += measuredMemory(w);
    }
    const moved = { ...w, host: to };
    this.#add(dst, moved);
    dst.availableBytes -= measuredMemory(w);
    return moved;
  }

  #add(s: Slot, w: PlacementWorkload): void {
    s.workloads.set(w.name, w);
    s.reservedBytes += memoryWeight(w);
    s.cpuRequestMilli += cpuRequestMilli(w);
    s.cpuLoadMilli += cpuLoadMilli(w);
    if (w.group) {
      const g = s.groups.get(w.group) ?? { members: new Set<string>(), spread: 0 };
      g.members.add(w.name);
      if (w.spread) g.spread++;
      s.groups.set(w.group, g);
    }
  }

  #remove(s: Slot, w: PlacementWorkload): void {
    if (!s.workloads.delete(w.name)) return;
    s.reservedBytes -= memoryWeight(w);
    s.cpuRequestMilli -= cpuRequestMilli(w);
    s.cpuLoadMilli -= cpuLoadMilli(w);
    const g = w.group ? s.groups.get(w.group) : undefined;
    if (g && w.group) {
      g.members.delete(w.name);
      if (w.spread) g.spread--;
      if (g.members.size === 0) s.groups.delete(w.group);
    }
  }

  #incompatibilities(src: HostFacts, dst: HostFacts): string[] {
    const key = `${src.name}\0${dst.name}`;
    let p = this.#compat.get(key);
    if (!p) this.#compat.set(key, (p = incompatibilities(src, dst)));
    return p;
  }

  /** Why `s` cannot take `w`, or null when it can. Checked cheapest first. */
  refusal(w: Omit<PlacementWorkload, 'host'> & { host?: string }, s: Slot, o: { exclude: ReadonlySet<string>; source?: HostFacts }): Refusal | null {
    const h = s.host.name;
    const no = (kind: RefusalKind, reason: string): Refusal => ({ host: h, kind, reason });
    if (!s.host.alive) return no('lost', `${h} is lost`);
    if (s.host.cordoned) return no('cordoned', `${h} is cordoned`);
    if (o.exclude.has(h) || h === w.host) return no('excluded', h === w.host ? `${h} is where it runs` : `${h} is excluded`);
    if (o.source) {
      if (!s.host.facts.dataStream) return no('no-data-stream', `${h} has no data stream (no TLS identity) and takes no part in migrations`);
      const problems = this.#incompatibilities(o.source, s.host.facts);
      if (problems.length) return no('incompatible', `${h} is incompatible: ${problems.join('; ')}`);
    }
    const g = w.group ? s.groups.get(w.group) : undefined;
    if (g && w.group) {
      // Anti-affinity binds both ways: a spread newcomer, or a spread workload already there.
      const others = [...g.members].filter((m) => m !== w.name);
      const othersSpread = g.spread - (g.members.has(w.name) && w.spread ? 1 : 0);
      if (others.length && (w.spread || othersSpread > 0))
        return no('spread', `${h} already runs "${others.sort()[0]}" of group ${w.group} (spread)`);
    }
    const need = memoryWeight(w);
    const free = s.memoryCapacity - s.reservedBytes;
    if (need > free)
      return no('memory', `${h} has ${formatBytes(Math.max(0, free))} of memory free against its requests (${formatBytes(s.reservedBytes)} of ${formatBytes(s.memoryCapacity)} reserved)`);
    const cpu = cpuRequestMilli(w);
    if (cpu > 0 && s.cpuRequestMilli + cpu > s.cpuCapacityMilli)
      return no('cpu', `${h} has ${formatCpus(Math.max(0, s.cpuCapacityMilli - s.cpuRequestMilli))} CPUs free against its requests (${formatCpus(s.cpuRequestMilli)} of ${formatCpus(s.cpuCapacityMilli)} requested)`);
    const needed = memoryNeeded(measuredMemory(w));
    if (s.availableBytes < needed) return no('available', `${h} has ${formatBytes(Math.max(0, s.availableBytes))} of memory available, about ${formatBytes(needed)} is needed`);
    return null;
  }

  /**
   * The best host for `w`: most memory left free against requests (relative, in whole
   * percentage points), then the lowest CPU load (relative, whole points), then the fewest
   * workloads, then the name. O(hosts).
   */
  best(w: Omit<PlacementWorkload, 'host'> & { host?: string }, o: PlaceOptions = {}): Placement {
    const exclude = new Set(o.exclude ?? []);
    const refused: Refusal[] = [];
    let best: { s: Slot; key: [number, number, number]; free: number } | null = null;
    const weight = memoryWeight(w);
    const load = cpuLoadMilli(w);
    for (const s of this.slots.values()) {
      const r = this.refusal(w, s, { exclude, ...(o.source ? { source: o.source } : {}) });
      if (r) {
        refused.push(r);
        continue;
      }
      const free = (s.memoryCapacity - s.reservedBytes - weight) / Math.max(1, s.memoryCapacity);
      const key: [number, number, number] = [-Math.floor(free * 100), Math.floor(((s.cpuLoadMilli + load) / s.cpuCapacityMilli) * 100), s.workloads.size];
      if (!best || compareKeys(key, best.key) < 0 || (compareKeys(key, best.key) === 0 && s.host.name < best.s.host.name)) best = { s, key, free };
    }
    if (!best) return { refused: refused.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (a.host < b.host ? -1 : 1)) };
    const s = best.s;
    return {
      host: s.host.name,
      score: Math.round(best.free * 1000) / 1000,
      reason: `${s.host.name}: ${Math.floor(best.free * 100)}% of its memory free against requests after the move, CPU ${best.key[1]}% loaded, ${s.workloads.size} workload(s)`,
    };
  }
}

const compareKeys = (a: readonly number[], b: readonly number[]): number => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
};

// The nearest misses first: a person reading why nothing fits wants the resource, not the cordons.
const KIND_ORDER: Record<RefusalKind, number> = { memory: 0, cpu: 1, available: 2, spread: 3, incompatible: 4, 'no-data-stream': 5, cordoned: 6, lost: 7, excluded: 8 };

/** One line naming what the workload needs and why each host refused it (the first few; how many more). */
export function describeRefusals(w: Omit<PlacementWorkload, 'host'>, refused: readonly Refusal[], shown = 6): string {
  const cpu = cpuRequestMilli(w);
  const need = `${formatBytes(memoryWeight(w))} of memory${cpu ? ` and ${formatCpus(cpu)} CPUs` : ''}`;
  if (!refused.length) return `no host to take "${w.name}" (${need}): no live host is known`;
  const list = refused.slice(0, shown).map((r) => r.reason);
  const more = refused.length > shown ? `; and ${refused.length - shown} more host(s) refused` : '';
  return `no host can take "${w.name}" (${need}${w.group && w.spread ? `, spread from group ${w.group}` : ''}): ${list.join('; ')}${more}`;
}

/** Where a new or moving workload can go: the best host, or why each host was refused. */
export function place(
  w: Omit<PlacementWorkload, 'host'> & { host?: string },
  hosts: readonly PlacementHost[],
  workloads: readonly PlacementWorkload[],
  o: { exclude?: readonly string[]; source?: HostFacts } = {},
): Placement {
  const ledger = new Ledger(hosts, workloads);
  // A moving workload's source is the host it runs on, unless the caller says otherwise.
  const source = o.source ?? (w.host ? ledger.slots.get(w.host)?.host.facts : undefined);
  return ledger.best(w, { exclude: [...(o.exclude ?? []), ...(w.host ? [w.host] : [])], ...(source ? { source } : {}) });
}

/** The fleet after the moves: each moved workload on its destination, both hosts' available memory changed by what it copies. */
export function applyMoves(hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[], moves: readonly Move[]): { hosts: PlacementHost[]; workloads: PlacementWorkload[] } {
  const to = new Map(moves.map((m) => [m.workload, m] as const));
  const delta = new Map<string, number>();
  const out = workloads.map((w) => {
    const m = to.get(w.name);
    if (!m || m.from !== w.host) return w;
    delta.set(m.from, (delta.get(m.from) ?? 0) + measuredMemory(w));
    delta.set(m.to, (delta.get(m.to) ?? 0) - measuredMemory(w));
    return { ...w, host: m.to };
  });
  return {
    hosts: hosts.map((h) => (delta.has(h.name) ? { ...h, facts: { ...h.facts, memory: { ...h.facts.memory, availableBytes: h.facts.memory.availableBytes + delta.get(h.name)! } } } : h)),
    workloads: out,
  };
}
