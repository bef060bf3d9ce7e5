// Which pages a post-copied process still waits for (agent/migration/postcopy-pages.ts), against
// a plain model under random event sequences: a page thrown away (madvise, munmap) is never
// filled afterwards, a moved one is asked for by its source address, a fork copies the set.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MissingPages } from '../../agent/migration/postcopy-pages.ts';

const P = 4096;
const base = 0x7f0000000000;

/** The model: current address -> source address. */
type Model = Map<number, number>;

const op = fc.oneof(
  fc.record({ k: fc.constant('remove' as const), start: fc.nat(63), len: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ k: fc.constant('remap' as const), from: fc.nat(63), to: fc.nat(127), len: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ k: fc.constant('fill' as const), at: fc.nat(127) }),
);

describe('MissingPages', () => {
  it('follows removes, moves and fills like the model', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(63), { minLength: 1, maxLength: 40 }), fc.array(op, { maxLength: 30 }), (pages, ops) => {
        const runs = pages.map((p) => ({ start: base + p * P, end: base + (p + 1) * P }));
        const m = new MissingPages(runs);
        const model: Model = new Map(pages.map((p) => [base + p * P, base + p * P]));
        for (const o of ops) {
          if (o.k === 'remove') {
            const s = base + o.start * P;
            m.removeRange(s, s + o.len * P);
            for (const a of [...model.keys()]) if (a >= s && a < s + o.len * P) model.delete(a);
          } else if (o.k === 'remap') {
            const from = base + o.from * P;
            const to = base + 0x100000 + o.to * P;
            m.remap(from, to, o.len * P);
            const moved = [...model].filter(([a]) => a >= from && a < from + o.len * P);
            for (const [a] of moved) model.delete(a);
            for (const a of [...model.keys()]) if (a >= to && a < to + o.len * P) model.delete(a);
            for (const [a, src] of moved) model.set(a - from + to, src);
          } else {
            const a = [...model.keys()][o.at % Math.max(1, model.size)];
            if (a !== undefined) {
              m.delete(a);
              model.delete(a);
            }
          }
          expect(m.size).toBe(model.size);
          for (const [cur, src] of model) {
            expect(m.sourceOf(cur)).toBe(src);
            expect(m.currentOf(src)).toBe(cur);
          }
        }
      }),
    );
  });

  it('a forked child gets its own copy of the set', () => {
    const m = new MissingPages([{ start: base, end: base + 3 * P }]);
    const child = m.clone();
    m.delete(base);
    expect(m.size).toBe(2);
    expect(child.size).toBe(3);
    expect(child.sourceOf(base)).toBe(base);
  });

  it('a page thrown away is no longer waited for, not even by its source address', () => {
    const m = new MissingPages([{ start: base, end: base + 4 * P }]);
    m.removeRange(base + P + 100, base + 2 * P);
    expect(m.sourceOf(base + P)).toBeUndefined();
    expect(m.currentOf(base + P)).toBeUndefined();
    expect(m.sources().sort()).toEqual([base, base + 2 * P, base + 3 * P]);
  });
});
