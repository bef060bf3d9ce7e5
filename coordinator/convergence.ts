// The pre-copy switchover rule: after every pre-copy round, decide whether to do another round,
// to throttle the workload (it dirties memory faster than we can send it), or to switch over
// (freeze, final transfer, restore). Pure and deterministic: same rounds + config -> same answer.

import type { FixedCosts, MigrationMode } from '../shared/migration.ts';
import type { ConvergenceDecision, SwitchoverReason } from '../shared/migration-events.ts';
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
  /** What earlier migrations to this destination took beyond the agents' prediction (coordinator/downtime-miss.ts). */
  learnedMissMs?: number;
  /**
   * precopy (default): the rule above. postcopy: switch over after round 1, the last delta left
   * for after the resume. hybrid: rounds while they meet the budget or make progress; then
   * post-copy, instead of throttling or a switchover over the budget.
   */
  mode?: MigrationMode;
  /** postcopy/hybrid: where the source writes what post-copy still has to carry (not the rule's: it travels with it). */
  postcopyBackup?: string;
}

/** What the rule decides after each round, and why it switches over: shared/migration-events.ts (they go out in the round events). */
export type { ConvergenceDecision, SwitchoverReason };

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
  return Math.max(0, c.freezeMs + c.dumpMs + c.resumeMs + (cfg.learnedMissMs ?? 0));
};

/**
 * Downtime if we switched over after this round: the fixed costs (as the agents measured them,
 * else the configured ones, plus what earlier migrations to this host took beyond them) plus
 * the time to send the pages that are still dirty (the source's estimate of them, else the
 * round's dirty set), compressed by the round's ratio, at the round's bandwidth. Infinity when
 * the bandwidth is unknown (0).
 */
export function predictDowntimeMs(stats: RoundStats, cfg: ConvergenceConfig): number {
  const fixed = fixedCostsMs(stats, cfg);
  const pages = stats.remainingPages ?? stats.pagesDirty;
  if (pages <= 0) return fixed;
  if (!(stats.bandwidthBps > 0)) return Number.POSITIVE_INFINITY;
  const ratio = stats.compressionRatio > 0 ? stats.compressionRatio : 1;
  const bytes = (pages * (cfg.pageSize ?? DEFAULT_PAGE_SIZE)) / ratio;
  return fixed + sendEstimateMs(bytes, stats);
}

/**
 * Time to send `bytes` at the round's bandwidth. A link measured on a few pages measures round
 * trips, so for such a round the estimate is at most the round itself, which sent about as much.
 */
export function sendEstimateMs(bytes: number, stats: Pick<RoundStats, 'bandwidthBps' | 'linkMeasured' | 'durationMs'>): number {
  const ms = (bytes / stats.bandwidthBps) * 1000;
  return stats.linkMeasured === false && stats.durationMs > 0 ? Math.min(ms, stats.durationMs) : ms;
}

/**
 * The workload writes about as fast as a well-measured link carries (a link speed measured on a
 * few pages is round trips, not the link), or it rewrote nearly all its memory since the last
 * scan: a region rewritten whole between scans measures a dirty rate no higher than the round
 * allowed, whatever it truly is, and no number of rounds can catch up with it.
 */
export const OUTRUN_SHARE = 0.8;
export const REWRITTEN_SHARE = 0.9;
export const outrunsLink = (r: RoundStats): boolean =>
  r.linkMeasured !== false && r.bandwidthBps > 0 && (r.dirtyRateBps >= OUTRUN_SHARE * r.bandwidthBps || (r.pagesScanned > 0 && r.pagesDirty >= REWRITTEN_SHARE * r.pagesScanned));

/** Decide what to do after the rounds done so far (oldest first). */
export function decideSwitchover(rounds: readonly RoundStats[], cfg: ConvergenceConfig): ConvergenceDecision {
  const last = rounds.at(-1);
  if (last === undefined) return { action: 'continue', predictedDowntimeMs: null };
  if (cfg.mode === 'postcopy') return { action: 'switchover', reason: 'round-limit', predictedDowntimeMs: fixedCostsMs(last, cfg), postcopy: true };
  if (cfg.mode === 'hybrid') {
    const d = decideSwitchover(rounds, { ...cfg, mode: 'precopy', allowThrottle: true });
    // Within the budget a plain switchover is as good; anything else goes over to post-copy, whose downtime is the fixed costs.
    if (d.action === 'throttle' || (d.action === 'switchover' && d.reason !== 'budget' && d.reason !== 'fixed-costs'))
      return { action: 'switchover', reason: d.action === 'throttle' ? 'no-progress' : d.reason, predictedDowntimeMs: fixedCostsMs(last, cfg), postcopy: true };
    return d;
  }
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
      // Throttling helps only a workload that dirties memory faster than a well-measured link
      // carries it; any other one has reached its working set, which more rounds cannot shrink.
      if ((cfg.allowThrottle ?? true) && !last.throttled && outrunsLink(last)) return { action: 'throttle', predictedDowntimeMs: predicted };
      return { action: 'switchover', reason: 'no-progress', predictedDowntimeMs: predicted };
    }
  }
  return { action: 'continue', predictedDowntimeMs: predicted };
}
