// Progress within a round: the source reports when the round starts and then at most every
// PROGRESS_EVERY_MS, never failing the round over a report; the coordinator takes a report only
// from the migration's source, for the round under way, and never winds the figures back.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RoundProgress } from '../../agent/migration/progress.ts';
import { takesProgress, underWay } from '../../coordinator/progress.ts';
import { PROGRESS_EVERY_MS, TransferProgress } from '../../shared/migration.ts';
import { MigrationEventWire } from '../../shared/migration-events.ts';

afterEach(() => vi.useRealTimers());

const round = { migrationId: 'm-abc123', phase: 'precopy' as const, round: 1, pagesTotal: 1000 };

describe('a source reporting its round', () => {
  it('reports at the start, then at most every PROGRESS_EVERY_MS, with what was sent so far', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const got: TransferProgress[] = [];
    const p = new RoundProgress((r) => got.push(TransferProgress.parse(r)), round);
    expect(got).toEqual([{ ...round, pagesDone: 0, bytesRaw: 0, bytesOnWire: 0, elapsedMs: 0 }]);
    p.frame({ pages: 100, bytesRaw: 409600, bytesOnWire: 410000 });
    expect(got).toHaveLength(1);
    vi.advanceTimersByTime(PROGRESS_EVERY_MS);
    p.frame({ pages: 300, bytesRaw: 1228800, bytesOnWire: 1230000 });
    expect(got.at(-1)).toEqual({ ...round, pagesDone: 300, bytesRaw: 1228800, bytesOnWire: 1230000, elapsedMs: PROGRESS_EVERY_MS });
    p.frame({ pages: 400, bytesRaw: 1638400, bytesOnWire: 1640000 });
    expect(got).toHaveLength(2);
  });

  it('never reports more pages done than the round has, and a sink that throws does not stop the round', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const got: TransferProgress[] = [];
    const p = new RoundProgress((r) => got.push(r), { ...round, pagesTotal: 10 });
    vi.advanceTimersByTime(PROGRESS_EVERY_MS);
    p.frame({ pages: 12, bytesRaw: 40960, bytesOnWire: 41000 });
    expect(got.at(-1)?.pagesDone).toBe(10);
    const failing = new RoundProgress(() => {
      throw new Error('NATS connection closed');
    }, round);
    vi.advanceTimersByTime(PROGRESS_EVERY_MS);
    expect(() => failing.frame({ pages: 1, bytesRaw: 4096, bytesOnWire: 4100 })).not.toThrow();
  });

  it('a report is an event watchers can read', () => {
    const { migrationId, ...data } = { ...round, pagesDone: 5, bytesRaw: 20480, bytesOnWire: 20500, elapsedMs: 12 };
    const schema = MigrationEventWire.options.find((o) => o.shape.type.value === 'transfer.progress')!;
    expect(schema.shape.data.parse(data)).toEqual(data);
    expect(migrationId).toBe('m-abc123');
  });
});

describe('the coordinator taking a report', () => {
  const report = { phase: 'precopy' as const, round: 3, pagesTotal: 100, pagesDone: 40, bytesRaw: 163840, bytesOnWire: 164000, elapsedMs: 300 };
  const now = { source: 'h1', state: 'precopy', roundsEnded: 2, last: null };

  it("takes the source's report of the round under way", () => {
    expect(takesProgress('h1', report, now)).toBe(true);
    expect(takesProgress('h1', { ...report, phase: 'transfer' }, { ...now, state: 'freeze' })).toBe(true);
    expect(takesProgress('h1', { ...report, phase: 'transfer' }, { ...now, state: 'transfer' })).toBe(true);
  });

  it('refuses one from another host, of another phase or round, or claiming more pages than the round has', () => {
    expect(takesProgress('h2', report, now)).toBe(false);
    expect(takesProgress('h1', report, { ...now, state: 'transfer' })).toBe(false);
    expect(takesProgress('h1', { ...report, phase: 'transfer' }, now)).toBe(false);
    expect(takesProgress('h1', { ...report, round: 2 }, now)).toBe(false);
    expect(takesProgress('h1', { ...report, round: 4 }, now)).toBe(false);
    expect(takesProgress('h1', { ...report, pagesDone: 101 }, now)).toBe(false);
  });

  it('never winds a round back with a late report, and a report goes stale once its round ended', () => {
    const last = { ...report, pagesDone: 60, bytesRaw: 245760 };
    expect(takesProgress('h1', report, { ...now, last })).toBe(false);
    expect(takesProgress('h1', { ...report, pagesDone: 80, bytesRaw: 327680 }, { ...now, last })).toBe(true);
    expect(underWay(report, 'precopy', 3)).toBe(false);
    expect(underWay({ ...report, phase: 'transfer' }, 'restore', 2)).toBe(false);
  });

  it("takes post-copy's reports only while the workload runs on the destination (resume, cleanup)", () => {
    const pc = { ...report, phase: 'postcopy' as const };
    expect(underWay(pc, 'cleanup.running', 2)).toBe(true);
    expect(underWay(pc, 'resume.running', 2)).toBe(true);
    expect(underWay(pc, 'transfer', 2)).toBe(false);
    expect(underWay(pc, 'completed', 2)).toBe(false);
  });
});
