// The pre-copy switchover rule: after every pre-copy round, decide whether to do another round,
// to throttle the workload (it dirties memory faster than we can send it), or to switch over
// (freeze, final transfer, restore). Pure and deterministic: same rounds + config -> same answer.

import type { FixedCosts } from '../shared/migration.ts';
import type { RoundStats } from './phases.ts';

export type { FixedCosts };

export interface ConvergenceConfig {
  /** Maximum acceptable downtime (ms). */
  downtimeBudgetMs: number;
  fixedCosts: FixedCosts;
  /** Stop after this many rounds whatever the prediction (>= 1). */
  maxRounds: number;
  /** Bytes per page (default 4096). */
  pageSize?: number;
  /**
   * A round makes progress if its dirty set is at most (1 - minProgress) of the previous one
   * (default 0.1: at least 10% fewer dirty pages).
   */
  minProgress?: number;
  /** May the rule ask to throttle the workload when rounds stop making progress (default true)? */
  allowThrottle?: boolean;
}

/**
 * budget: the predicted downtime fits; fixed-costs: it does not, but the fixed costs alone
 * exceed the budget and the last delta adds little to them (another round cannot help);
 * no-progress: rounds stopped shrinking the dirty set (after throttling); round-limit.
 */
export type SwitchoverReason = 'budget' | 'fixed-costs' | 'no-progress' | 'round-limit';

export type ConvergenceDecision =
  | { action: 'continue'; predictedDowntimeMs: number | null }
  | { action: 'throttle'; predictedDowntimeMs: number }
  | { action: 'switchover'; reason: SwitchoverReason; predictedDowntimeMs: number | null };

export const DEFAULT_PAGE_SIZE = 4096;
/**
 * What a switchover costs besides the last delta, before a workload's own costs are known:
 * measured on the lab for small containers (freeze and state dump about 50 ms, building the
 * rest of the tree and resuming about 40 ms).
 */
export const DEFAULT_FIXED_COSTS: FixedCosts = { freezeMs: 10, dumpMs: 40, resumeMs: 40 };
export const DEFAULT_MIN_PROGRESS = 0.1;
/** When the fixed costs alone exceed the budget: switch over once the delta adds at most this share to them. */
export const FIXED_COST_SLACK = 0.1;

/** The fixed part of a prediction: the agents' measured costs, else the configured ones. */
export const fixedCostsMs = (stats: RoundStats, cfg: ConvergenceConfig): number => {
  const c = stats.fixedCosts ?? cfg.fixedCosts;
  return c.freezeMs + c.dumpMs + c.resumeMs;
};

/**
 * Downtime if we switched over after this round: the fixed costs (as the agents measured them,
 * else the configured ones) plus the time to send the pages that are still dirty (the source's
 * estimate of them, else the round's dirty set), compressed by the round's ratio, at the
 * round's bandwidth. Infinity when the bandwidth is unknown (0).
 */
export function predictDowntimeMs(stats: RoundStats, cfg: ConvergenceConfig): number {
  const fixed = fixedCostsMs(stats, cfg);
  const pages = stats.remainingPages ?? stats.pagesDirty;
  if (pages <= 0) return fixed;
  if (!(stats.bandwidthBps > 0)) return Number.POSITIVE_INFINITY;
  const ratio = stats.compressionRatio > 0 ? stats.compressionRatio : 1;
  const bytes = (pages * (cfg.pageSize ?? DEFAULT_PAGE_SIZE)) / ratio;
  return fixed + (bytes / stats.bandwidthBps) * 1000;
}

/** Decide what to do after the rounds done so far (oldest first). */
export function decideSwitchover(rounds: readonly RoundStats[], cfg: ConvergenceConfig): ConvergenceDecision {
  const last = rounds.at(-1);
  if (last === undefined) return { action: 'continue', predictedDowntimeMs: null };
  const predicted = predictDowntimeMs(last, cfg);
  if (predicted <= cfg.downtimeBudgetMs) return { action: 'switchover', reason: 'budget', predictedDowntimeMs: predicted };
  const fixed = fixedCostsMs(last, cfg);
  if (fixed >= cfg.downtimeBudgetMs && predicted <= fixed * (1 + FIXED_COST_SLACK)) return { action: 'switchover', reason: 'fixed-costs', predictedDowntimeMs: predicted };
  if (rounds.length >= Math.max(1, cfg.maxRounds)) return { action: 'switchover', reason: 'round-limit', predictedDowntimeMs: predicted };
  const prev = rounds.at(-2);
  if (prev !== undefined) {
    const minProgress = cfg.minProgress ?? DEFAULT_MIN_PROGRESS;
    const progressed = last.pagesDirty <= prev.pagesDirty * (1 - minProgress);
    if (!progressed) {
      if ((cfg.allowThrottle ?? true) && !last.throttled) return { action: 'throttle', predictedDowntimeMs: predicted };
      return { action: 'switchover', reason: 'no-progress', predictedDowntimeMs: predicted };
    }
  }
  return { action: 'continue', predictedDowntimeMs: predicted };
}
