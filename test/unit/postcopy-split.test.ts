// At a post-copy switchover, which pages of the last delta wait for after the resume
// (agent/migration/postcopy-split.ts): only data pages of anonymous memory, never the pages the
// restore makes the kernel write (rseq areas), the ones written in the round before first.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { minus, partition, splitForPostcopy } from '../../agent/migration/postcopy-split.ts';
import type { ProcessDirty } from '../../agent/engine/memory/dirty/types.ts';

const P = 4096;
const A = 0x10000000;

describe('splitForPostcopy', () => {
  const proc: ProcessDirty = {
    pid: 7,
    method: 'uffd-wp',
    ranges: [
      { start: A, end: A + 16 * P, file: false },
      { start: A + 32 * P, end: A + 40 * P, file: true },
    ],
    runs: [
      { addr: A, pages: 4, zero: false },
      { addr: A + 6 * P, pages: 2, zero: true },
      { addr: A + 10 * P, pages: 4, zero: false },
      { addr: A + 33 * P, pages: 2, zero: false },
    ],
    pagesScanned: 24,
  };

  it('leaves anonymous data pages for later; zero runs and private file pages go now', () => {
    const { now, later } = splitForPostcopy([proc], new Map());
    expect(now[0]!.runs).toEqual([
      { addr: A + 6 * P, pages: 2, zero: true },
      { addr: A + 33 * P, pages: 2, zero: false },
    ]);
    expect(later).toEqual([
      {
        pid: 7,
        hot: [],
        cold: [
          { addr: A, pages: 4, zero: false },
          { addr: A + 10 * P, pages: 4, zero: false },
        ],
      },
    ]);
  });

  it('sends a thread rseq area now, the page around it whole', () => {
    const { now, later } = splitForPostcopy([proc], new Map(), new Map([[7, [{ start: A + 2 * P + 0x60, end: A + 2 * P + 0x80 }]]]));
    expect(now[0]!.runs).toContainEqual({ addr: A + 2 * P, pages: 1, zero: false });
    expect(later[0]!.cold).toEqual([
      { addr: A, pages: 2, zero: false },
      { addr: A + 3 * P, pages: 1, zero: false },
      { addr: A + 10 * P, pages: 4, zero: false },
    ]);
  });

  it('puts the pages written in the round before first', () => {
    const { later } = splitForPostcopy([proc], new Map([[7, [{ addr: A + 12 * P, pages: 8, zero: false }]]]));
    expect(later[0]!.hot).toEqual([{ addr: A + 12 * P, pages: 2, zero: false }]);
    expect(later[0]!.cold).toEqual([
      { addr: A, pages: 4, zero: false },
      { addr: A + 10 * P, pages: 2, zero: false },
    ]);
  });
});

describe('partition and minus', () => {
  /** Sorted, non-overlapping page spans from page-number pairs. */
  const spansOf = (pages: number[]) => {
    const ps = [...new Set(pages)].sort((a, b) => a - b);
    return ps.map((p) => ({ start: A + p * P, end: A + (p + 1) * P }));
  };
  const merge = (rs: { addr: number; pages: number }[]) => rs.flatMap((r) => Array.from({ length: r.pages }, (_, i) => (r.addr - A) / P + i));

  it('partition puts every page of the runs on exactly one side, inside iff a span covers it', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(200), { maxLength: 80 }), fc.uniqueArray(fc.nat(200), { maxLength: 80 }), (runPages, spanPages) => {
        const runs = spansOf(runPages).map((s) => ({ addr: s.start, pages: 1, zero: false }));
        const covered = new Set(spanPages);
        const { inside, outside } = partition(runs, spansOf(spanPages));
        expect(merge(inside).sort((a, b) => a - b)).toEqual([...new Set(runPages)].filter((p) => covered.has(p)).sort((a, b) => a - b));
        expect(merge(outside).sort((a, b) => a - b)).toEqual([...new Set(runPages)].filter((p) => !covered.has(p)).sort((a, b) => a - b));
      }),
    );
  });

  it('partition cuts a long run at the spans edges, in order', () => {
    const { inside, outside } = partition([{ addr: A, pages: 10, zero: false }], [{ start: A + 2 * P, end: A + 4 * P }, { start: A + 8 * P, end: A + 20 * P }]);
    expect(inside.map((r) => [(r.addr - A) / P, r.pages])).toEqual([
      [2, 2],
      [8, 2],
    ]);
    expect(outside.map((r) => [(r.addr - A) / P, r.pages])).toEqual([
      [0, 2],
      [4, 4],
    ]);
  });

  it('minus takes whole pages out', () => {
    expect(minus([{ start: A, end: A + 8 * P }], [{ start: A + P + 1, end: A + P + 2 }])).toEqual([
      { start: A, end: A + P },
      { start: A + 2 * P, end: A + 8 * P },
    ]);
  });
});
