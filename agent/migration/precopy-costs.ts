// What a switchover costs besides the last delta, for the downtime prediction of live migration:
// freezing the tree, dumping its state (registers, fds, ... plus the final scan), and building
// the rest of it on the destination and resuming it. Each is a model in the tree's size
// (processes, threads), corrected by what this agent measured in earlier migrations (an
// exponentially weighted ratio of measured to modelled), and the freeze by what the tracker's
// own stop of this tree took in round 1. Pure apart from the module-level memory of earlier
// measurements.
import type { FixedCosts } from '../../shared/migration.ts';

export type { FixedCosts };

export interface TreeSize {
  processes: number;
  threads: number;
  /** The tree has a network namespace of its own (lock, attach, announce). */
  netns: boolean;
  /** The tree's resident memory (pages holding data at pre-copy's first round); absent: not known, counted as none. */
  residentBytes?: number;
}


/**
 * Costs seen on the lab (2 contended vCPU), per process, per thread and per GiB resident, plus a
 * base: freeze (network lock, cgroup freeze, seize), dump (state collection, the final scan, the
 * image), resume (the coordinator's calls, finishing the warm tree, commit, thaw). The per-GiB
 * terms are what a 1 GiB single-threaded writer's phases took beyond a 2 MiB one's in one bench
 * run (bench/migrate.ts, 2026-12-07: freeze +35-47 ms, restore and resume +40-55 ms): without
 * them a 1 GiB workload's first prediction fell about 100 ms short, and a ratio learnt from one
 * size misled the other.
 */
const MODEL = {
  freeze: { base: 15, process: 3, thread: 0.5, netns: 1, gib: 30 },
  dump: { base: 25, process: 10, thread: 2, netns: 0, gib: 20 },
  resume: { base: 55, process: 10, thread: 2, netns: 5, gib: 40 },
} as const;

type Part = keyof typeof MODEL;

export function modelled(part: Part, t: TreeSize): number {
  const m = MODEL[part];
  return m.base + m.process * t.processes + m.thread * t.threads + (t.netns ? m.netns : 0) + (m.gib * (t.residentBytes ?? 0)) / 2 ** 30;
}

const ALPHA = 0.5;

/** Measured/modelled ratios learnt from earlier migrations on this agent. */
export class CostModel {
  readonly #ratio: Record<Part, number> = { freeze: 1, dump: 1, resume: 1 };

  /** A switchover's costs for a tree of this size; `freezeSeenMs`: what stopping it once took (tracker injection). */
  estimate(t: TreeSize, freezeSeenMs?: number): FixedCosts {
    const freeze = modelled('freeze', t) * this.#ratio.freeze;
    return {
      freezeMs: round1(freezeSeenMs !== undefined ? Math.max(freeze, Math.min(freezeSeenMs, 4 * freeze)) : freeze),
      dumpMs: round1(modelled('dump', t) * this.#ratio.dump),
      resumeMs: round1(modelled('resume', t) * this.#ratio.resume),
    };
  }

  /** Folds in one measurement of a part. */
  learn(part: Part, t: TreeSize, measuredMs: number): void {
    const m = modelled(part, t);
    if (!(measuredMs > 0) || !(m > 0)) return;
    const r = Math.min(20, Math.max(0.05, measuredMs / m));
    this.#ratio[part] = this.#ratio[part] * (1 - ALPHA) + r * ALPHA;
  }

  ratio(part: Part): number {
    return this.#ratio[part];
  }
}

const round1 = (v: number): number => Math.round(v * 10) / 10;

/** This agent's model (one per process: the figures are about this host). */
export const costModel = new CostModel();
