// The plan of a rebalance: moves that even out the hosts' load, and only those worth a migration.
//
// A host's load is its dominant utilisation: the larger of memory (workloads' memory weights,
// placement.ts, over what requests may reserve) and CPU (workloads' CPU use or request over its
// CPUs), in percent. The fleet's imbalance is the highest load less the lowest, in percentage
// points, over the hosts that take part (alive, not cordoned, with a data stream).
//
// Hysteresis: nothing moves while the imbalance is at most IMBALANCE_PCT, and a move is taken
// only between two hosts more than IMBALANCE_PCT apart when it lowers the higher of their loads
// by at least MIN_GAIN_PCT (neither host ends above the source's load less MIN_GAIN_PCT) without
// taking the source below the destination's load before the move (the hot spot is not merely
// moved). Both new loads lie within the two old ones, so the imbalance never grows; each move
// replaces two loads by two strictly smaller than the larger one, so planning ends; and the
// choice depends only on where the workloads are: applying a plan and planning again finds
// nothing to move (unless maxMoves cut the first plan short).
import { Ledger, cpuLoadMilli, measuredMemory, memoryWeight, type Move, type PlacementHost, type PlacementWorkload, type Slot } from './placement.ts';

export const IMBALANCE_PCT = 15;
export const MIN_GAIN_PCT = 5;

export interface HostLoad {
  host: string;
  workloads: number;
  /** Sum of the workloads' memory weights, and what requests may reserve on the host. */
  memoryBytes: number;
  memoryCapacityBytes: number;
  memoryPct: number;
  cpus: number;
  cpuPct: number;
  /** The larger of memoryPct and cpuPct. */
  loadPct: number;
}

export interface RebalancePlan {
  moves: Move[];
  before: HostLoad[];
  after: HostLoad[];
  /** Highest host load less the lowest, percentage points. */
  imbalance: { before: number; after: number };
  thresholds: { imbalancePct: number; minGainPct: number };
}

// Loads are ratios of integers: a gap shown as exactly the threshold must not count as above it.
const EPSILON = 1e-9;
const memPct = (s: Slot, deltaBytes = 0) => (100 * (s.reservedBytes + deltaBytes)) / Math.max(1, s.memoryCapacity);
const cpuPct = (s: Slot, deltaMilli = 0) => (100 * (s.cpuLoadMilli + deltaMilli)) / s.cpuCapacityMilli;
const loadPct = (s: Slot, w?: PlacementWorkload, sign = 0) => Math.max(memPct(s, sign * (w ? memoryWeight(w) : 0)), cpuPct(s, sign * (w ? cpuLoadMilli(w) : 0)));
const takesPart = (s: Slot) => s.host.alive && !s.host.cordoned && s.host.facts.dataStream !== null;
const round1 = (n: number) => Math.round(n * 10) / 10;
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function summary(slots: readonly Slot[]): HostLoad[] {
  return slots.map((s) => ({
    host: s.host.name,
    workloads: s.workloads.size,
    memoryBytes: s.reservedBytes,
    memoryCapacityBytes: s.memoryCapacity,
    memoryPct: round1(memPct(s)),
    cpus: s.cpuLoadMilli / 1000,
    cpuPct: round1(cpuPct(s)),
    loadPct: round1(loadPct(s)),
  }));
}

function imbalance(slots: readonly Slot[]): number {
  if (slots.length < 2) return 0;
  const loads = slots.map((s) => loadPct(s));
  return round1(Math.max(...loads) - Math.min(...loads));
}

interface Step {
  w: PlacementWorkload;
  to: Slot;
  reason: string;
}

/**
 * The next move worth making, or null: from the most loaded host down, its workloads by their
 * share of its load, each to the least loaded host that can take it (placement's rules, checked
 * against the host the workload runs on before this plan).
 */
function nextMove(ledger: Ledger, slots: readonly Slot[], origin: (w: PlacementWorkload) => string): Step | null {
  const asc = slots.map((s) => ({ s, u: loadPct(s) })).sort((a, b) => a.u - b.u || byName(a.s.host.name, b.s.host.name));
  const lowest = asc[0]?.u ?? 0;
  const none = new Set<string>();
  for (let i = asc.length - 1; i > 0; i--) {
    const src = asc[i]!;
    if (src.u - lowest <= IMBALANCE_PCT + EPSILON) break;
    const share = (w: PlacementWorkload) => Math.max(memoryWeight(w) / Math.max(1, src.s.memoryCapacity), cpuLoadMilli(w) / src.s.cpuCapacityMilli);
    const movable = [...src.s.workloads.values()].filter((w) => !w.pinned).sort((a, b) => share(b) - share(a) || byName(a.name, b.name));
    for (const w of movable) {
      const source = ledger.slots.get(origin(w))?.host.facts;
      for (const dst of asc) {
        if (src.u - dst.u <= IMBALANCE_PCT + EPSILON) break;
        if (ledger.refusal(w, dst.s, { exclude: none, ...(source ? { source } : {}) })) continue;
        const fromAfter = loadPct(src.s, w, -1);
        const toAfter = loadPct(dst.s, w, +1);
        if (Math.max(fromAfter, toAfter) <= src.u - MIN_GAIN_PCT && fromAfter >= dst.u)
          return { w, to: dst.s, reason: `${src.s.host.name} load ${round1(src.u)}% → ${round1(fromAfter)}%, ${dst.s.host.name} ${round1(dst.u)}% → ${round1(toAfter)}%` };
        break;
      }
    }
  }
  return null;
}

export function planRebalance(hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[], o: { maxMoves?: number } = {}): RebalancePlan {
  const maxMoves = o.maxMoves ?? Infinity;
  const ledger = new Ledger(hosts, workloads);
  const slots = [...ledger.slots.values()].filter(takesPart);
  const before = summary(slots);
  const imbalanceBefore = imbalance(slots);
  // A workload moved twice in one plan makes one migration, from where it runs now; moved back, none.
  const origins = new Map<string, string>();
  const origin = (w: PlacementWorkload) => origins.get(w.name) ?? w.host;
  const planned = new Map<string, Move>();
  // Planning ends by itself (see the top); the guard only keeps a bug from hanging the coordinator.
  for (let guard = 4 * workloads.length + 16; planned.size < maxMoves && guard > 0; guard--) {
    const step = nextMove(ledger, slots, origin);
    if (!step) break;
    const from = origin(step.w);
    origins.set(step.w.name, from);
    ledger.move(step.w, step.to.host.name);
    planned.delete(step.w.name);
    if (step.to.host.name !== from) planned.set(step.w.name, { workload: step.w.name, from, to: step.to.host.name, memoryBytes: measuredMemory(step.w), reason: step.reason });
  }
  return {
    moves: [...planned.values()],
    before,
    after: summary(slots),
    imbalance: { before: imbalanceBefore, after: imbalance(slots) },
    thresholds: { imbalancePct: IMBALANCE_PCT, minGainPct: MIN_GAIN_PCT },
  };
}
