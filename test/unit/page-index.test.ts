// The page index of incremental checkpoints against a plain model: after any sequence of rounds
// (pages written, pages cleared, mappings gone), every page is found exactly where its last
// write put it, and nowhere when it was cleared or unmapped since.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PAGE } from '../../agent/engine/memory/dirty/types.ts';
import { PageIndex, type StoredRun, mergeSpans } from '../../agent/engine/memory/page-index.ts';

const PAGES = 64;
const span = fc.tuple(fc.integer({ min: 0, max: PAGES - 1 }), fc.integer({ min: 1, max: 16 })).map(([s, n]) => ({ start: s * PAGE, end: Math.min(PAGES, s + n) * PAGE }));
const round = fc.record({ written: fc.array(span, { maxLength: 5 }), cleared: fc.array(span, { maxLength: 3 }), kept: fc.array(span, { minLength: 1, maxLength: 4 }) });

/** Which offset the index gives each page (absent: none). */
function offsets(runs: readonly StoredRun[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const r of runs) for (let i = 0; i < r.pages; i++) m.set(r.addr / PAGE + i, r.offset + i * PAGE);
  return m;
}

describe('PageIndex', () => {
  it('holds every page at its last write, and no page cleared or outside the kept mappings', () => {
    fc.assert(
      fc.property(fc.array(round, { minLength: 1, maxLength: 8 }), (rounds) => {
        const idx = new PageIndex();
        const model = new Map<number, number>();
        let end = 0;
        for (const r of rounds) {
          // Written runs of one round are sorted and do not overlap (a tracker's runs).
          const written: StoredRun[] = mergeSpans([...r.written].sort((a, b) => a.start - b.start)).map((s) => {
            const run = { addr: s.start, pages: (s.end - s.start) / PAGE, offset: end, crc32: 1 };
            end += s.end - s.start;
            return run;
          });
          const writtenPages = new Set(written.flatMap((w) => Array.from({ length: w.pages }, (_, i) => w.addr / PAGE + i)));
          // A tracker reports a page once a round: cleared pages are the ones not written.
          const clearedPages = [...new Set(r.cleared.flatMap((c) => Array.from({ length: (c.end - c.start) / PAGE }, (_, i) => c.start / PAGE + i)))].filter((p) => !writtenPages.has(p));
          for (const p of clearedPages) model.delete(p);
          for (const w of written) for (let i = 0; i < w.pages; i++) model.set(w.addr / PAGE + i, w.offset + i * PAGE);
          for (const p of [...model.keys()]) if (!r.kept.some((k) => k.start <= p * PAGE && p * PAGE < k.end)) model.delete(p);
          idx.apply(written, clearedPages.map((p) => ({ start: p * PAGE, end: (p + 1) * PAGE })), r.kept);
          expect(offsets(idx.runs)).toEqual(model);
          const sorted = idx.runs.every((x, i, a) => i === 0 || a[i - 1]!.addr + a[i - 1]!.pages * PAGE <= x.addr);
          expect(sorted).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps a whole run with its checksum, and marks a piece cut from one as unknown until resolved', () => {
    const idx = new PageIndex();
    idx.apply([{ addr: 0, pages: 8, offset: 0, crc32: 42 }], [], [{ start: 0, end: 8 * PAGE }]);
    idx.apply([{ addr: 3 * PAGE, pages: 1, offset: 8 * PAGE, crc32: 7 }], [], [{ start: 0, end: 8 * PAGE }]);
    expect(idx.runs.map((r) => [r.addr / PAGE, r.pages, r.offset / PAGE, r.crc32])).toEqual([
      [0, 3, 0, -1],
      [3, 1, 8, 7],
      [4, 4, 4, -1],
    ]);
    expect(idx.within(PAGE, 4 * PAGE).map((r) => [r.addr / PAGE, r.pages, r.offset / PAGE])).toEqual([
      [1, 2, 1],
      [3, 1, 8],
    ]);
    idx.resolve((r) => r.offset + 1);
    expect(idx.runs.map((r) => r.crc32)).toEqual([1, 7, 4 * PAGE + 1]);
    expect(idx.bytes).toBe(8 * PAGE);
  });
});
