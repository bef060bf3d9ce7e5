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

const MiB = 1 << 20;

describe('DowntimeMiss', () => {
  it('starts at zero and takes the first miss as it is', () => {
    const m = new DowntimeMiss();
    expect(m.forHost('h2', 1024 * MiB)).toBe(0);
    m.note('h2', 1024 * MiB, 180, 300);
    expect(m.forHost('h2', 1024 * MiB)).toBe(120);
    expect(m.forHost('h3', 1024 * MiB)).toBe(0);
  });

  it('follows later misses with an exponentially weighted mean', () => {
    const m = new DowntimeMiss();
    m.note('h2', 8 * MiB, 100, 200); // 100
    m.note('h2', 8 * MiB, 100, 100); // 100 + 0.3 * (0 - 100) = 70
    expect(m.forHost('h2', 8 * MiB)).toBe(70);
  });

  it("learns by size: a large workload's miss is not added to a small one's prediction", () => {
    const m = new DowntimeMiss();
    m.note('h2', 1026 * MiB, 165, 266);
    expect(m.forHost('h2', 1026 * MiB)).toBe(101);
    expect(m.forHost('h2', 2 * MiB)).toBe(0);
    m.note('h2', 2 * MiB, 166, 148);
    expect(m.forHost('h2', 3 * MiB)).toBe(-18);
    expect(m.forHost('h2', 1024 * MiB)).toBe(101);
  });

  it('a size class with no migration yet borrows from the classes next to it only', () => {
    const m = new DowntimeMiss();
    m.note('h2', 300 * MiB, 100, 160); // 256 MiB-1 GiB: +60
    m.note('h2', 2048 * MiB, 100, 200); // 1-4 GiB... 2 GiB is in 1-4 GiB: +100
    expect(m.forHost('h2', 5000 * MiB)).toBe(100); // 4 GiB on: next to 1-4 GiB
    expect(m.forHost('h2', 100 * MiB)).toBe(60); // 64-256 MiB: next to 256 MiB-1 GiB
    expect(m.forHost('h2', 10 * MiB)).toBe(0); // two classes away from any
  });

  it('bounds an outlier and ignores what is not a measurement', () => {
    const m = new DowntimeMiss();
    m.note('h2', 64 * MiB, 100, 60_000);
    expect(m.forHost('h2', 64 * MiB)).toBe(5_000);
    m.note('h3', 64 * MiB, Number.NaN, 100);
    m.note('h3', 64 * MiB, 100, 0);
    m.note('h3', Number.NaN, 100, 200);
    expect(m.forHost('h3', 64 * MiB)).toBe(0);
  });

  it('is part of the prediction, never below zero', () => {
    expect(predictDowntimeMs(stats, cfg)).toBe(100);
    expect(predictDowntimeMs(stats, { ...cfg, learnedMissMs: 120 })).toBe(220);
    expect(predictDowntimeMs(stats, { ...cfg, learnedMissMs: -500 })).toBe(0);
  });
});
