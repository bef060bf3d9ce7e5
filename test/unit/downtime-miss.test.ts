import { describe, expect, it } from 'vitest';
import { predictDowntimeMs, type ConvergenceConfig } from '../../coordinator/convergence.ts';
import { DowntimeMiss } from '../../coordinator/downtime-miss.ts';
import type { RoundStats } from '../../coordinator/phases.ts';

const stats: RoundStats = {
  round: 2,
  pagesScanned: 1000,
  pagesDirty: 0,
  pagesSent: 0,
  bytesOnWire: 0,
  compressionRatio: 1,
  durationMs: 10,
  dirtyRateBps: 0,
  bandwidthBps: 1e9,
  predictedDowntimeMs: 0,
  fixedCosts: { freezeMs: 20, dumpMs: 30, resumeMs: 50 },
};
const cfg: ConvergenceConfig = { downtimeBudgetMs: 300, maxRounds: 10, fixedCosts: { freezeMs: 0, dumpMs: 0, resumeMs: 0 } };

describe('DowntimeMiss', () => {
  it('starts at zero and takes the first miss as it is', () => {
    const m = new DowntimeMiss();
    expect(m.forHost('h2')).toBe(0);
    m.note('h2', 180, 300);
    expect(m.forHost('h2')).toBe(120);
    expect(m.forHost('h3')).toBe(0);
  });

  it('follows later misses with an exponentially weighted mean', () => {
    const m = new DowntimeMiss();
    m.note('h2', 100, 200); // 100
    m.note('h2', 100, 100); // 100 + 0.3 * (0 - 100) = 70
    expect(m.forHost('h2')).toBe(70);
  });

  it('bounds an outlier and ignores what is not a measurement', () => {
    const m = new DowntimeMiss();
    m.note('h2', 100, 60_000);
    expect(m.forHost('h2')).toBe(5_000);
    m.note('h3', Number.NaN, 100);
    m.note('h3', 100, 0);
    expect(m.forHost('h3')).toBe(0);
  });

  it('is part of the prediction, never below zero', () => {
    expect(predictDowntimeMs(stats, cfg)).toBe(100);
    expect(predictDowntimeMs(stats, { ...cfg, learnedMissMs: 120 })).toBe(220);
    expect(predictDowntimeMs(stats, { ...cfg, learnedMissMs: -500 })).toBe(0);
  });
});
