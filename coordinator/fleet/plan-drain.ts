// The plan of a drain: where each workload of the host goes, or why it stays. First fit
// decreasing: the largest workloads choose first, while the most hosts still have room, and each
// planned move counts against its destination for the moves after it, so a drain never
// overcommits a host's memory or CPU requests.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { Ledger, describeRefusals, largestFirst, measuredMemory, type Move, type PlacementHost, type PlacementWorkload, type Refusal } from './placement.ts';

export interface Stay {
  workload: string;
  host: string;
  reason: string;
  /** Each host's refusal, for --json (absent for a pinned workload). */
  refused?: Refusal[];
}

export interface DrainPlan {
  host: string;
  /** Migrations at once; the moves are ordered so that any `parallel` consecutive ones go to different hosts where the plan allows. */
  parallel: number;
  moves: Move[];
  stays: Stay[];
}

/** KubeVirt's default: two outgoing migrations per host at once. */
export const DEFAULT_DRAIN_PARALLEL = 2;

export function planDrain(host: string, hosts: readonly PlacementHost[], workloads: readonly PlacementWorkload[], o: { parallel?: number } = {}): DrainPlan {
  const source = hosts.find((h) => h.name === host);
  if (!source) throw new FerryError(ErrorCode.NotFound, `no host "${host}" to drain (known: ${hosts.map((h) => h.name).join(', ') || 'none'})`);
  const parallel = Math.max(1, Math.floor(o.parallel ?? DEFAULT_DRAIN_PARALLEL));
  const ledger = new Ledger(hosts, workloads);
  const moves: Move[] = [];
  const stays: Stay[] = [];
  for (const w of workloads.filter((x) => x.host === host).sort(largestFirst)) {
    if (w.pinned) {
      stays.push({ workload: w.name, host, reason: 'pinned' });
      continue;
    }
    const p = ledger.best(w, { exclude: [host], source: source.facts });
    if ('refused' in p) {
      stays.push({ workload: w.name, host, reason: describeRefusals(w, p.refused), refused: p.refused });
      continue;
    }
    ledger.move(w, p.host);
    moves.push({ workload: w.name, from: host, to: p.host, memoryBytes: measuredMemory(w), reason: p.reason });
  }
  return { host, parallel, moves: spreadDestinations(moves, parallel), stays };
}

/**
 * The moves in execution order: largest first, except that a move whose destination is already
 * among the last `parallel - 1` is put back behind the next one that goes elsewhere, so that
 * migrations running at once land on different hosts. O(moves²) in the worst case, moves being
 * one host's workloads.
 */
function spreadDestinations(moves: Move[], parallel: number): Move[] {
  if (parallel < 2) return moves;
  const rest = [...moves];
  const out: Move[] = [];
  while (rest.length) {
    const recent = new Set(out.slice(-(parallel - 1)).map((m) => m.to));
    const i = rest.findIndex((m) => !recent.has(m.to));
    out.push(...rest.splice(Math.max(0, i), 1));
  }
  return out;
}
