// The run arithmetic and the choices behind dirty tracking and the page stream (no processes).
import { describe, expect, it } from 'vitest';
import { planTracking } from '../../agent/engine/memory/dirty/choose.ts';
import { joinAdjacent, normalizeRuns, runsWellFormed, trackedRanges } from '../../agent/engine/memory/dirty/ranges.ts';
import { isZeroRegion } from '../../agent/engine/memory/dirty/uffd.ts';
import { parseMaps } from '../../agent/engine/process/procfs.ts';
import { PAGE_IS } from '../../agent/ffi/uffd.ts';
import { frameRuns, readTable } from '../../agent/transfer/page-table.ts';

const P = 4096;
const d = (page: number, pages: number) => ({ addr: page * P, pages, zero: false });
const z = (page: number, pages: number) => ({ addr: page * P, pages, zero: true });

describe('normalizeRuns', () => {
  it('sorts, merges neighbours of one kind, keeps kinds apart', () => {
    expect(normalizeRuns([d(10, 2), d(0, 2), d(2, 3), z(12, 1), z(13, 2)])).toEqual([d(0, 5), d(10, 2), z(12, 3)]);
  });

  it('where data and zero overlap, data wins (a later look at the page)', () => {
    expect(normalizeRuns([z(0, 10), d(3, 2), d(4, 3)])).toEqual([z(0, 3), d(3, 4), z(7, 3)]);
    expect(runsWellFormed(normalizeRuns([z(0, 10), d(3, 2), d(9, 5)]))).toBe(true);
  });

  it('runsWellFormed refuses overlaps, empty and unaligned runs', () => {
    expect(runsWellFormed([d(0, 2), d(1, 1)])).toBe(false);
    expect(runsWellFormed([d(0, 0)])).toBe(false);
    expect(runsWellFormed([{ addr: 100, pages: 1, zero: false }])).toBe(false);
  });
});

describe('trackedRanges', () => {
  const maps = parseMaps(
    [
      '555555554000-555555556000 r-xp 00000000 fe:00 12 /usr/bin/x',
      '555555556000-555555557000 rw-p 00002000 fe:00 12 /usr/bin/x',
      '555555557000-555555559000 rw-p 00000000 00:00 0 ',
      '555555559000-55555557a000 rw-p 00000000 00:00 0 [heap]',
      '7f0000000000-7f0000001000 rw-s 00000000 00:01 7 /dev/shm/x',
      '7f0000001000-7f0000002000 ---p 00000000 00:00 0 ',
      '7f0000002000-7f0000003000 rw-p 00000000 00:00 0 [anon:name]',
      '7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0 [vvar]',
      '7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]',
    ].join('\n'),
  );

  it('keeps writable private mappings, marks file-backed ones, skips shared and special ones', () => {
    const r = trackedRanges(maps);
    expect(r.map((x) => [x.start.toString(16), x.file])).toEqual([
      ['555555556000', true],
      ['555555557000', false],
      ['555555559000', false],
      ['7f0000002000', false],
      ['7ffffffde000', false],
    ]);
    // Adjacent anonymous ranges are scanned together, never across file/anonymous.
    expect(joinAdjacent(r).map((x) => [x.start.toString(16), x.end.toString(16)])).toEqual([
      ['555555556000', '555555557000'],
      ['555555557000', '55555557a000'],
      ['7f0000002000', '7f0000003000'],
      ['7ffffffde000', '7ffffffff000'],
    ]);
  });
});

describe('isZeroRegion', () => {
  it('pages without data of their own are zero in anonymous memory, file data in file mappings', () => {
    expect(isZeroRegion(PAGE_IS.PRESENT, false)).toBe(false);
    expect(isZeroRegion(PAGE_IS.PRESENT | PAGE_IS.PFNZERO, false)).toBe(true);
    expect(isZeroRegion(0, false)).toBe(true); // MADV_DONTNEED'd or never touched
    expect(isZeroRegion(PAGE_IS.SWAPPED, false)).toBe(false);
    expect(isZeroRegion(0, true)).toBe(false);
  });
});

describe('planTracking', () => {
  const probes = { uffdWpAsync: true, pagemapScan: true, softDirty: false };
  it('prefers uffd-wp and explains each refusal', () => {
    expect(planTracking(probes, { ok: true, reason: 'ok' }, 'xxh3').uffd.ok).toBe(true);
    expect(planTracking({ ...probes, uffdWpAsync: false }, { ok: true, reason: 'ok' }, 'xxh3').uffd.reason).toMatch(/WP_ASYNC/);
    expect(planTracking({ ...probes, pagemapScan: false }, { ok: true, reason: 'ok' }, 'xxh3').uffd.reason).toMatch(/PAGEMAP_SCAN/);
    expect(planTracking(probes, { ok: false, reason: 'a dropped 2 MiB block reported 0 of 512 pages' }, 'xxh3').uffd.reason).toMatch(/self-test failed: a dropped/);
    const p = planTracking(probes, { ok: true, reason: 'ok' }, 'xxh3');
    expect(p.softDirty).toEqual({ ok: false, reason: 'kernel built without CONFIG_MEM_SOFT_DIRTY' });
    expect(p.hash).toMatchObject({ ok: true, pagemapScan: true, hasher: 'xxh3' });
  });
});

describe('frameRuns', () => {
  it('cuts data at the frame size and keeps zero runs whole', () => {
    const frames = [...frameRuns([d(0, 300), z(300, 10_000), d(20_000, 10)], 256 * P)];
    expect(frames).toEqual([[d(0, 256)], [d(256, 44), z(300, 10_000), d(20_000, 10)]]);
  });

  it('caps the runs of a frame', () => {
    const runs = Array.from({ length: 5000 }, (_, i) => z(i * 2, 1));
    const frames = [...frameRuns(runs, 1 << 20)];
    expect(frames.map((f) => f.length)).toEqual([2048, 2048, 904]);
  });

  it('readTable refuses a table that does not fit or holds unaligned runs', () => {
    expect(() => readTable(Buffer.alloc(16), 2)).toThrow(/do not fit/);
    const t = Buffer.alloc(16);
    t.writeUInt32LE(100, 0);
    t.writeUInt32LE(1, 8);
    expect(() => readTable(t, 1)).toThrow(/bad run/);
  });
});
