// Pure logic of live migration: how a husk's mappings follow the source's layout, the fixed-cost
// model, how hard a workload is throttled, and the switchover rule's use of measured figures.
import { describe, expect, it } from 'vitest';
import { backingKey, planRelayout, type MapSpec } from '../../agent/engine/memory/relayout.ts';
import { CostModel, modelled } from '../../agent/migration/precopy-costs.ts';
import { throttleCpus } from '../../agent/migration/throttle.ts';
import { findFar } from '../../agent/engine/memory/layout.ts';
import { decideSwitchover, predictDowntimeMs, type ConvergenceConfig } from '../../coordinator/convergence.ts';
import type { RoundStats } from '../../coordinator/phases.ts';
import { ForkCarry, withoutPages } from '../../agent/migration/precopy-cow.ts';
import type { DirtyRound, ProcessDirty } from '../../agent/engine/memory/dirty/types.ts';
import type { PrecopyLayout } from '../../shared/precopy.ts';

const P = 0x1000n;
const anon = (s: bigint, e: bigint, perms = 'rw-p'): MapSpec => ({ start: s * P, end: e * P, perms, kind: 'anon', fileOffset: 0n });
const file = (s: bigint, e: bigint, off: bigint, perms = 'r--p', path = '/lib/x.so'): MapSpec => ({ start: s * P, end: e * P, perms, kind: 'file-private', path, fileOffset: off * P });
const span = (s: bigint, e: bigint) => ({ start: s * P, end: e * P });

describe('planRelayout', () => {
  it('does nothing when the layout is the same', () => {
    const l = [anon(10n, 20n), file(30n, 40n, 0n)];
    expect(planRelayout(l, l)).toEqual({ unmap: [], map: [], protect: [] });
  });

  it('maps a new mapping, unmaps a removed one', () => {
    const p = planRelayout([anon(10n, 20n)], [anon(30n, 40n)]);
    expect(p.unmap).toEqual([span(10n, 20n)]);
    expect(p.map).toEqual([anon(30n, 40n)]);
  });

  it('keeps content of a grown mapping and maps only the growth', () => {
    const p = planRelayout([anon(10n, 20n)], [anon(10n, 25n)]);
    expect(p).toEqual({ unmap: [], map: [anon(20n, 25n)], protect: [] });
    // Grown down (a stack) the same way.
    const st = (s: bigint): MapSpec => ({ ...anon(s, 20n), kind: 'stack' });
    expect(planRelayout([st(15n)], [st(12n)]).map).toEqual([{ ...st(12n), end: 15n * P }]);
  });

  it('unmaps the tail of a shrunk mapping', () => {
    expect(planRelayout([anon(10n, 20n)], [anon(10n, 14n)])).toEqual({ unmap: [span(14n, 20n)], map: [], protect: [] });
  });

  it('re-protects a split without touching content; anon and heap are alike', () => {
    const p = planRelayout([anon(10n, 20n)], [anon(10n, 12n), anon(12n, 20n, 'r--p')]);
    expect(p).toEqual({ unmap: [], map: [], protect: [{ ...span(12n, 20n), perms: 'r--p' }] });
    expect(planRelayout([anon(10n, 20n)], [{ ...anon(10n, 20n), kind: 'heap' }]).map).toEqual([]);
  });

  it('treats a file mapped at another offset, or another file, as new', () => {
    expect(planRelayout([file(10n, 20n, 0n)], [file(10n, 20n, 1n)]).map).toEqual([file(10n, 20n, 1n)]);
    expect(planRelayout([file(10n, 20n, 0n)], [file(10n, 20n, 0n, 'r--p', '/lib/y.so')]).unmap).toEqual([span(10n, 20n)]);
    // A piece of a file mapping keeps its offset arithmetic.
    const p = planRelayout([file(10n, 15n, 0n)], [file(10n, 20n, 0n)]);
    expect(p.map).toEqual([{ ...file(10n, 20n, 0n), start: 15n * P, fileOffset: 5n * P }]);
  });

  it('replaces a moved mapping, leaves special and shared ones alone', () => {
    const p = planRelayout([anon(10n, 20n)], [anon(50n, 60n)]);
    expect(p.unmap).toEqual([span(10n, 20n)]);
    expect(p.map).toEqual([anon(50n, 60n)]);
    expect(backingKey({ start: 0n, kind: 'vdso', fileOffset: 0n, perms: 'r-xp' })).toBeNull();
    expect(backingKey({ start: 0n, kind: 'shm', fileOffset: 0n, perms: 'rw-s' })).toBeNull();
  });
});

describe('findFar', () => {
  it('puts the scratch area in the middle of the largest gap', () => {
    const at = findFar([{ start: 0x555500000000n, end: 0x555500100000n }, { start: 0x7f0000000000n, end: 0x7fff00000000n }], 0x10000n);
    // The largest gap is below the binary here: its middle, far from both neighbours.
    expect(at > 0x200000000000n && at < 0x300000000000n).toBe(true);
    expect(at % 0x1000n).toBe(0n);
  });
});

describe('fixed costs', () => {
  it('grow with the tree and learn from measurements', () => {
    const m = new CostModel();
    const small = m.estimate({ processes: 1, threads: 1, netns: false });
    const big = m.estimate({ processes: 4, threads: 20, netns: true });
    expect(big.dumpMs).toBeGreaterThan(small.dumpMs);
    expect(big.resumeMs).toBeGreaterThan(small.resumeMs);
    const t = { processes: 1, threads: 1, netns: false };
    m.learn('dump', t, 3 * modelled('dump', t));
    expect(m.estimate(t).dumpMs).toBeGreaterThan(small.dumpMs * 1.5);
    // A seen freeze counts, within bounds.
    expect(m.estimate(t, 1000).freezeMs).toBeLessThanOrEqual(4 * m.estimate(t).freezeMs);
  });

  it('grow with resident memory: 1 GiB costs about 90 ms more than none, not counted when unknown', () => {
    const m = new CostModel();
    const sum = (c: ReturnType<CostModel['estimate']>) => c.freezeMs + c.dumpMs + c.resumeMs;
    const t = { processes: 1, threads: 1, netns: false };
    expect(sum(m.estimate({ ...t, residentBytes: 2 ** 30 })) - sum(m.estimate(t))).toBeCloseTo(90);
    expect(sum(m.estimate({ ...t, residentBytes: 0 }))).toBe(sum(m.estimate(t)));
    // A ratio learnt on a large tree is a ratio of the size-aware model: a small tree's estimate
    // keeps its shape (twice the model measured, half weight: 1.5x).
    m.learn('freeze', { ...t, residentBytes: 2 ** 30 }, 2 * modelled('freeze', { ...t, residentBytes: 2 ** 30 }));
    expect(m.estimate(t).freezeMs).toBeCloseTo(1.5 * modelled('freeze', t), 0);
  });
});

describe('throttleCpus', () => {
  it('scales the CPU used to dirty at a quarter of the link, then halves', () => {
    expect(throttleCpus(400e6, 400e6, 1, null)).toBeCloseTo(0.25);
    expect(throttleCpus(100e6, 400e6, 0.2, null)).toBeCloseTo(0.1); // capped at half of what it used
    expect(throttleCpus(100e6, 100e6, 1, 0.3)).toBeCloseTo(0.15);
    expect(throttleCpus(100e6, 100e6, 1, 0.03)).toBe(0.02);
    expect(throttleCpus(0, 0, 0, null)).toBe(0.5);
  });
});

describe('switchover with measured figures', () => {
  const cfg: ConvergenceConfig = { downtimeBudgetMs: 100, fixedCosts: { freezeMs: 10, dumpMs: 10, resumeMs: 10 }, maxRounds: 10 };
  const base = { pagesScanned: 100_000, pagesDirty: 1000, pagesSent: 1000, bytesOnWire: 4_096_000, compressionRatio: 1, durationMs: 100 };
  const round = (n: number, over: Partial<RoundStats> = {}): RoundStats => ({ round: n, ...base, dirtyRateBps: 1e6, bandwidthBps: 1e8, predictedDowntimeMs: 0, ...over });

  it('uses the source estimate of remaining pages and its fixed costs', () => {
    expect(predictDowntimeMs(round(1, { remainingPages: 0 }), cfg)).toBe(30);
    expect(predictDowntimeMs(round(1, { fixedCosts: { freezeMs: 50, dumpMs: 50, resumeMs: 50 }, remainingPages: 0 }), cfg)).toBe(150);
  });

  it('switches over on fixed costs when they alone exceed the budget and the delta adds little', () => {
    const fixedCosts = { freezeMs: 40, dumpMs: 40, resumeMs: 40 };
    expect(decideSwitchover([round(1, { fixedCosts, remainingPages: 100 })], cfg)).toMatchObject({ action: 'switchover', reason: 'fixed-costs' });
    // A big delta still earns another round.
    expect(decideSwitchover([round(1, { fixedCosts, remainingPages: 10_000 })], cfg)).toMatchObject({ action: 'continue' });
  });
});

describe('copy-on-write carry (precopy-cow)', () => {
  const d = (page: number, pages: number) => ({ addr: page * 4096, pages, zero: false });
  const z = (page: number, pages: number) => ({ addr: page * 4096, pages, zero: true });
  const sp = (page: number, pages: number) => ({ start: page * 4096, end: (page + pages) * 4096 });

  it('withoutPages cuts shared spans out of data runs, keeps zero runs, and says what it cut', () => {
    expect(withoutPages([d(0, 10), z(10, 2), d(12, 4)], [sp(2, 3), sp(9, 5)])).toEqual({ keep: [d(0, 2), d(5, 4), z(10, 2), d(14, 2)], cut: [sp(2, 3), sp(9, 1), sp(12, 2)] });
    expect(withoutPages([d(0, 4)], [sp(0, 4)])).toEqual({ keep: [], cut: [sp(0, 4)] });
    expect(withoutPages([d(0, 4)], [])).toEqual({ keep: [d(0, 4)], cut: [] });
  });

  // Pids far above pid_max: no such process, so no pagemap and nothing counts as shared.
  const proc = (pid: number, ppid: number): PrecopyLayout['processes'][number] => ({ pid, hostPid: pid + 4_000_000, ppid, sid: 1, vmas: [{ start: '0x10000', end: '0x20000', perms: 'rw-p', kind: 'anon', fileOffset: '0x0' }] });
  const dirty = (hostPid: number): ProcessDirty => ({ pid: hostPid, method: 'uffd-wp', ranges: [], runs: [d(16, 2)], pagesScanned: 16 });
  const round = (...hostPids: number[]): DirtyRound => ({ round: 1, processes: hostPids.map(dirty), exited: [], pagesScanned: 0, pagesDirty: 0, zeroPages: 0, scanMs: 0 });
  const layout = (...ps: PrecopyLayout['processes']): PrecopyLayout => ({ round: 1, processes: ps, container: null });

  it('streams parents first and forks each process once, in the first round that scans it', () => {
    const carry = new ForkCarry();
    const l = layout(proc(1, 0), proc(2, 1), proc(3, 2));
    // The tracker's order need not be the tree's; the grandchild is not scanned yet.
    const p1 = carry.plan(round(4_000_002, 4_000_001), l);
    expect(p1.order.map((p) => p.pid)).toEqual([4_000_001, 4_000_002]);
    expect(p1.keepShared).toBe(true);
    expect(p1.order.map((p) => p1.prepare(p).fork)).toEqual([true, true]);
    const p2 = carry.plan(round(4_000_001, 4_000_002, 4_000_003), l);
    expect(p2.order.map((p) => p2.prepare(p).fork)).toEqual([false, false, true]);
  });

  it('a process whose parent was never scanned is forked with its parent, and all its pages go', () => {
    const carry = new ForkCarry();
    const l = layout(proc(1, 0), proc(2, 1), proc(3, 2));
    const p1 = carry.plan(round(4_000_001, 4_000_003), l);
    const steps = p1.order.map((p) => p1.prepare(p));
    expect(steps.map((s) => s.fork)).toEqual([true, true]);
    expect(steps[1]!.runs).toEqual([d(16, 2)]);
    // The parent came along with it (the destination forked it on demand): never forked again.
    const p2 = carry.plan(round(4_000_002), l);
    expect(p2.prepare(p2.order[0]!).fork).toBe(false);
  });

  it('a one-process tree reads pages the fast way', () => {
    expect(new ForkCarry().plan(round(4_000_001), layout(proc(1, 0))).keepShared).toBe(false);
  });
});
