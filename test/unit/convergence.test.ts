import { describe, expect, it } from 'vitest';
import { decideSwitchover, predictDowntimeMs, type ConvergenceConfig } from '../../coordinator/convergence.ts';
import type { RoundStats } from '../../coordinator/phases.ts';

const cfg: ConvergenceConfig = {
  downtimeBudgetMs: 300,
  fixedCosts: { freezeMs: 20, dumpMs: 30, resumeMs: 50 }, // 100 ms fixed
  maxRounds: 10,
};

// 1e6 bytes/s; 4096-byte pages -> one page costs 4.096 ms at ratio 1.
const round = (n: number, pagesDirty: number, over: Partial<RoundStats> = {}): RoundStats => ({
  round: n,
  pagesScanned: 100_000,
  pagesDirty,
  pagesSent: 1_000,
  bytesOnWire: 4_096_000,
  compressionRatio: 1,
  durationMs: 4_096,
  dirtyRateBps: 100_000,
  bandwidthBps: 1e6,
  predictedDowntimeMs: 0,
  ...over,
});

describe('predictDowntimeMs', () => {
  it('is the fixed costs plus the time to send the dirty pages', () => {
    expect(predictDowntimeMs(round(1, 100), cfg)).toBeCloseTo(100 + 409.6);
    expect(predictDowntimeMs(round(1, 0), cfg)).toBe(100);
  });

  it('divides by the compression ratio and honours the page size', () => {
    expect(predictDowntimeMs(round(1, 100, { compressionRatio: 4 }), cfg)).toBeCloseTo(100 + 102.4);
    expect(predictDowntimeMs(round(1, 100), { ...cfg, pageSize: 2048 })).toBeCloseTo(100 + 204.8);
    // a nonsensical ratio counts as no compression
    expect(predictDowntimeMs(round(1, 100, { compressionRatio: 0 }), cfg)).toBeCloseTo(100 + 409.6);
  });

  it('on a link measured from a few pages, sending takes at most as long as the round did', () => {
    // 100 pages at 1e6 B/s would be 409.6 ms; the round that sent about as much took 50 ms.
    expect(predictDowntimeMs(round(1, 100, { linkMeasured: false, durationMs: 50 }), cfg)).toBeCloseTo(100 + 50);
    expect(predictDowntimeMs(round(1, 100, { linkMeasured: true, durationMs: 50 }), cfg)).toBeCloseTo(100 + 409.6);
  });

  it('is infinite when the bandwidth is unknown', () => {
    expect(predictDowntimeMs(round(1, 1, { bandwidthBps: 0 }), cfg)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('decideSwitchover', () => {
  it('continues before any round', () => {
    expect(decideSwitchover([], cfg)).toEqual({ action: 'continue', predictedDowntimeMs: null });
  });

  it('switches over as soon as the prediction fits the budget', () => {
    const d = decideSwitchover([round(1, 48)], cfg); // 100 + 196.6 ms
    expect(d).toMatchObject({ action: 'switchover', reason: 'budget' });
    expect(d.predictedDowntimeMs).toBeCloseTo(296.608);
  });

  it('the budget is inclusive', () => {
    const exact: ConvergenceConfig = { ...cfg, downtimeBudgetMs: predictDowntimeMs(round(1, 50), cfg) };
    expect(decideSwitchover([round(1, 50)], exact)).toMatchObject({ action: 'switchover', reason: 'budget' });
  });

  it('continues while the dirty set shrinks enough and the budget is not met', () => {
    expect(decideSwitchover([round(1, 10_000)], cfg)).toMatchObject({ action: 'continue' });
    expect(decideSwitchover([round(1, 10_000), round(2, 9_000)], cfg)).toMatchObject({ action: 'continue' }); // exactly 10% fewer
  });

  it('asks to throttle when a round makes no progress and the writes outrun a well-measured link', () => {
    const fast = { dirtyRateBps: 2e6 };
    expect(decideSwitchover([round(1, 10_000, fast), round(2, 9_500, fast)], cfg)).toMatchObject({ action: 'throttle' });
    expect(decideSwitchover([round(1, 10_000, fast), round(2, 12_000, fast)], cfg)).toMatchObject({ action: 'throttle' });
  });

  it('never throttles a workload whose writes the link keeps up with: its working set is reached, so it switches over', () => {
    expect(decideSwitchover([round(1, 10_000), round(2, 9_500)], cfg)).toMatchObject({ action: 'switchover', reason: 'no-progress' });
  });

  it('throttles a writer that rewrites nearly all its memory between scans, whatever dirty rate that measures', () => {
    const whole = { pagesScanned: 10_000 };
    expect(decideSwitchover([round(1, 10_000, whole), round(2, 9_950, whole)], cfg)).toMatchObject({ action: 'throttle' });
  });

  it('never throttles on a link speed measured from a few pages (round trips, not the link)', () => {
    const tiny = { dirtyRateBps: 2e6, linkMeasured: false };
    expect(decideSwitchover([round(1, 10_000, tiny), round(2, 9_500, tiny)], cfg)).toMatchObject({ action: 'switchover', reason: 'no-progress' });
  });

  it('switches over for no progress when already throttled', () => {
    const rounds = [round(1, 10_000), round(2, 9_900), round(3, 9_800, { throttled: true })];
    expect(decideSwitchover(rounds, cfg)).toMatchObject({ action: 'switchover', reason: 'no-progress' });
  });

  it('switches over for no progress when throttling is not allowed', () => {
    expect(decideSwitchover([round(1, 10_000), round(2, 9_900)], { ...cfg, allowThrottle: false })).toMatchObject({
      action: 'switchover',
      reason: 'no-progress',
    });
  });

  it('honours a custom progress threshold', () => {
    const rounds = [round(1, 10_000), round(2, 9_500)];
    expect(decideSwitchover(rounds, { ...cfg, minProgress: 0.05 })).toMatchObject({ action: 'continue' });
    expect(decideSwitchover(rounds, { ...cfg, minProgress: 0.5 })).toMatchObject({ action: 'switchover', reason: 'no-progress' });
    const fast = rounds.map((r) => ({ ...r, dirtyRateBps: 2e6 }));
    expect(decideSwitchover(fast, { ...cfg, minProgress: 0.5 })).toMatchObject({ action: 'throttle' });
  });

  it('a throttled round that progresses continues', () => {
    expect(decideSwitchover([round(1, 10_000), round(2, 9_900), round(3, 5_000, { throttled: true })], cfg)).toMatchObject({ action: 'continue' });
  });

  it('switches over at the round limit', () => {
    const rounds = [round(1, 10_000), round(2, 5_000), round(3, 2_500)];
    expect(decideSwitchover(rounds, { ...cfg, maxRounds: 3 })).toMatchObject({ action: 'switchover', reason: 'round-limit' });
    expect(decideSwitchover(rounds, { ...cfg, maxRounds: 4 })).toMatchObject({ action: 'continue' });
  });

  it('a round limit below 1 still allows the one round that was done', () => {
    expect(decideSwitchover([round(1, 10_000)], { ...cfg, maxRounds: 0 })).toMatchObject({ action: 'switchover', reason: 'round-limit' });
  });

  it('prefers the budget reason over the round limit', () => {
    expect(decideSwitchover([round(1, 10_000), round(2, 10)], { ...cfg, maxRounds: 2 })).toMatchObject({ action: 'switchover', reason: 'budget' });
  });

  it('only looks at the last two rounds', () => {
    const rounds = [round(1, 1_000), round(2, 100_000), round(3, 50_000)];
    expect(decideSwitchover(rounds, cfg)).toMatchObject({ action: 'continue' });
  });

  it('converges a realistic run: each round sends what the previous dirtied', () => {
    // dirty rate 10% of bandwidth: the dirty set shrinks ~10x per round
    const rounds: RoundStats[] = [];
    let dirty = 262_144; // 1 GiB
    let decision = decideSwitchover(rounds, cfg);
    while (decision.action === 'continue') {
      dirty = Math.floor(dirty / 10);
      rounds.push(round(rounds.length + 1, dirty));
      decision = decideSwitchover(rounds, cfg);
    }
    expect(decision).toMatchObject({ action: 'switchover', reason: 'budget' });
    expect(rounds.map((r) => r.pagesDirty)).toEqual([26_214, 2_621, 262, 26]);
  });

  it('is pure: same input, same answer, input untouched', () => {
    const rounds = Object.freeze([round(1, 10_000), round(2, 9_950)]);
    const a = decideSwitchover(rounds, cfg);
    const b = decideSwitchover(rounds, cfg);
    expect(a).toEqual(b);
    expect(rounds).toHaveLength(2);
  });
});

describe('decideSwitchover with --mode postcopy and hybrid', () => {
  it('postcopy switches over after round 1, predicting the fixed costs only', () => {
    const d = decideSwitchover([round(1, 50_000)], { ...cfg, mode: 'postcopy' });
    expect(d).toEqual({ action: 'switchover', reason: 'round-limit', predictedDowntimeMs: 100, postcopy: true });
  });

  it('hybrid switches over plainly when the budget is met', () => {
    const d = decideSwitchover([round(1, 48)], { ...cfg, mode: 'hybrid' });
    expect(d).toMatchObject({ action: 'switchover', reason: 'budget' });
    expect(d).not.toHaveProperty('postcopy');
  });

  it('hybrid goes over to post-copy where pre-copy would throttle, and never throttles', () => {
    // Writes as fast as the link carries: no progress, and it outruns the link.
    const outrun = { dirtyRateBps: 1e6 };
    const rounds = [round(1, 10_000, outrun), round(2, 9_900, outrun)];
    expect(decideSwitchover(rounds, cfg)).toMatchObject({ action: 'throttle' });
    expect(decideSwitchover(rounds, { ...cfg, mode: 'hybrid' })).toEqual({ action: 'switchover', reason: 'no-progress', predictedDowntimeMs: 100, postcopy: true });
  });

  it('hybrid keeps doing rounds while they converge', () => {
    expect(decideSwitchover([round(1, 10_000), round(2, 5_000)], { ...cfg, mode: 'hybrid' })).toMatchObject({ action: 'continue' });
  });

  it('hybrid at the round limit goes over to post-copy', () => {
    const rounds = Array.from({ length: 10 }, (_, i) => round(i + 1, 10_000 - i * 1_500 > 1_000 ? 10_000 - i * 1_500 : 1_000));
    expect(decideSwitchover(rounds, { ...cfg, mode: 'hybrid' })).toMatchObject({ action: 'switchover', reason: 'round-limit', postcopy: true });
  });
});
