// Mappings against the image, page range by page range: protection, shared or private, and
// backing (anonymous, heap, stack, a special mapping, a file at an offset, shared memory).
// Both sides are cut at every boundary either has, so VMA splits and merges that change
// nothing a program can see do not count.
import { type Vma, fromHex } from '../../../shared/image-format.ts';
import type { MapEntry } from '../process/procfs.ts';
import { Check, type ProcessRef } from './check.ts';
import type { ProcessReading } from './reading.ts';

interface Seg {
  start: bigint;
  end: bigint;
  perms: string;
  /** What backs the range, with a file's offset expressed as (offset - start) so merges keep it. */
  backing: string;
}

const SPECIAL: Record<string, string> = { '[heap]': 'heap', '[stack]': 'stack', '[vdso]': 'vdso', '[vvar]': 'vvar', '[vvar_vclock]': 'vvar_vclock', '[vsyscall]': 'vsyscall' };

function fileBacking(path: string, offset: bigint, start: bigint): string {
  return `file ${path} at start${offset - start >= 0n ? '+' : '-'}0x${(offset - start < 0n ? start - offset : offset - start).toString(16)}`;
}

export function imageSegs(vmas: readonly Vma[]): Seg[] {
  return vmas.map((v) => {
    const start = fromHex(v.start);
    let backing: string;
    switch (v.kind) {
      case 'anon':
        backing = 'anon';
        break;
      case 'file-private':
      case 'file-shared':
        backing = fileBacking(v.path ?? '', fromHex(v.fileOffset), start);
        break;
      case 'shm':
        backing = 'shared memory';
        break;
      default:
        backing = v.kind;
    }
    return { start, end: fromHex(v.end), perms: v.perms, backing };
  });
}

const SHM_PATH = /^\/(memfd:|dev\/zero|SYSV)/;

export function liveSegs(maps: readonly MapEntry[]): Seg[] {
  return maps.map((m) => {
    let backing: string;
    if (SPECIAL[m.path]) backing = SPECIAL[m.path]!;
    else if (m.path === '' || m.inode === 0) backing = 'anon';
    else if (m.perms[3] === 's' && SHM_PATH.test(m.path)) backing = 'shared memory';
    else backing = fileBacking(m.path, m.offset, m.start);
    return { start: m.start, end: m.end, perms: m.perms, backing };
  });
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** What covers [a, b) in a sorted segment list (null: nothing mapped). */
function at(segs: readonly Seg[], a: bigint): Seg | null {
  let lo = 0;
  let hi = segs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = segs[mid]!;
    if (a < s.start) hi = mid - 1;
    else if (a >= s.end) lo = mid + 1;
    else return s;
  }
  return null;
}

/** `ferryOwn`: ranges of ferry's own still mapped in the process (a husk's scratch page before its finish). */
export function compareMappings(vmas: readonly Vma[], r: ProcessReading, ref: ProcessRef, ferryOwn: ReadonlyArray<{ start: bigint; end: bigint }> = []): Check {
  const c = new Check('mappings');
  c.compared('range');
  c.compared('perms');
  c.compared('backing');
  const want = imageSegs(vmas).sort((x, y) => (x.start < y.start ? -1 : 1));
  const got = liveSegs(r.maps.filter((m) => !ferryOwn.some((o) => m.start >= o.start && m.end <= o.end))).sort((x, y) => (x.start < y.start ? -1 : 1));
  const cuts = [...new Set([...want, ...got].flatMap((s) => [s.start, s.end]))].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  // Adjacent differing pieces of the same kind are reported as one range.
  let open: { start: bigint; end: bigint; field: string; e: string; a: string } | null = null;
  const flush = () => {
    if (open) c.differ(ref, `mapping ${hex(open.start)}-${hex(open.end)} ${open.field}`, open.e, open.a);
    open = null;
  };
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i]!;
    const b = cuts[i + 1]!;
    const w = at(want, a);
    const g = at(got, a);
    let diff: { field: string; e: string; a: string } | null = null;
    if (!w && !g) diff = null;
    else if (!w || !g) diff = { field: 'range', e: w ? `${w.perms} ${w.backing}` : 'unmapped', a: g ? `${g.perms} ${g.backing}` : 'unmapped' };
    else if (w.backing !== g.backing) diff = { field: 'backing', e: w.backing, a: g.backing };
    else if (w.perms !== g.perms) diff = { field: w.perms[3] !== g.perms[3] ? 'flags (shared/private)' : 'perms', e: w.perms, a: g.perms };
    if (open && (!diff || open.end !== a || open.field !== diff.field || open.e !== diff.e || open.a !== diff.a)) flush();
    if (diff) {
      const o = open as { end: bigint } | null;
      if (o) o.end = b;
      else open = { start: a, end: b, ...diff };
    }
  }
  flush();
  if (vmas.some((v) => v.kind === 'shm')) c.skip('shared memory mapping names', 'compared as shared memory, not by name (shared anonymous memory comes back as a memfd)');
  c.skip('madvise flags', 'not compared yet (smaps VmFlags)');
  return c;
}
