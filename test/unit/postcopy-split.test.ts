// At a post-copy switchover, which pages of the last delta wait for after the resume
// (agent/migration/postcopy-split.ts): only data pages of anonymous memory, never the pages the
// restore makes the kernel write (rseq areas), the ones written in the round before first.
import { describe, expect, it } from 'vitest';
import { cut, minus, splitForPostcopy } from '../../agent/migration/postcopy-split.ts';
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

describe('cut and minus', () => {
  it('cut covers the run exactly, in order', () => {
    const parts = cut({ addr: A, pages: 10, zero: false }, [{ start: A + 2 * P, end: A + 4 * P }, { start: A + 8 * P, end: A + 20 * P }]);
    expect(parts.map((p) => [(p.run.addr - A) / P, p.run.pages, p.inside])).toEqual([
      [0, 2, false],
      [2, 2, true],
      [4, 4, false],
      [8, 2, true],
    ]);
  });

  it('minus takes whole pages out', () => {
    expect(minus([{ start: A, end: A + 8 * P }], [{ start: A + P + 1, end: A + P + 2 }])).toEqual([
      { start: A, end: A + P },
      { start: A + 2 * P, end: A + 8 * P },
    ]);
  });
});
