// Which mappings a tracker follows, and the run-list arithmetic both trackers share.
import { vmaKind } from '../../collect.ts';
import type { MapEntry } from '../../process/procfs.ts';
import { type DirtyRun, PAGE, type TrackedRange } from './types.ts';

/**
 * Writable private mappings: anonymous, heap, stack and private file mappings (whose written
 * pages are anonymous copies). Shared mappings travel as shared objects, and the kernel's
 * special mappings are recreated, never copied.
 */
export function trackedRanges(maps: readonly MapEntry[]): TrackedRange[] {
  const out: TrackedRange[] = [];
  for (const m of maps) {
    if (m.perms[1] !== 'w' || m.perms[3] !== 'p') continue;
    const kind = vmaKind(m);
    if (kind !== 'anon' && kind !== 'heap' && kind !== 'stack' && kind !== 'file-private') continue;
    out.push({ start: Number(m.start), end: Number(m.end), file: kind === 'file-private' });
  }
  return out;
}

/** Adjacent ranges of the same kind joined, so one scan covers each (a scan region then never mixes file and anonymous pages). */
export function joinAdjacent(ranges: readonly TrackedRange[]): TrackedRange[] {
  const out: TrackedRange[] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last && last.end === r.start && last.file === r.file) last.end = r.end;
    else out.push({ ...r });
  }
  return out;
}

export const pagesIn = (ranges: readonly { start: number; end: number }[]): number => ranges.reduce((a, r) => a + (r.end - r.start) / PAGE, 0);

/**
 * Sorts runs by address and makes them disjoint: where a data run and a zero run overlap the
 * data run wins (reading the current content is always right; the zero came from an earlier
 * look), then neighbours of the same kind merge.
 */
export function normalizeRuns(runs: readonly DirtyRun[]): DirtyRun[] {
  if (runs.length === 0) return [];
  // Boundaries sweep: at each page boundary count the data and zero runs covering it.
  const events: Array<[number, number, number]> = []; // [addr, dData, dZero]
  for (const r of runs) {
    if (r.pages <= 0) continue;
    const end = r.addr + r.pages * PAGE;
    events.push([r.addr, r.zero ? 0 : 1, r.zero ? 1 : 0], [end, r.zero ? 0 : -1, r.zero ? -1 : 0]);
  }
  events.sort((a, b) => a[0] - b[0]);
  const out: DirtyRun[] = [];
  let data = 0;
  let zero = 0;
  for (let i = 0; i < events.length; ) {
    const at = events[i]![0];
    for (; i < events.length && events[i]![0] === at; i++) {
      data += events[i]![1];
      zero += events[i]![2];
    }
    const next = i < events.length ? events[i]![0] : at;
    if (next === at || (data === 0 && zero === 0)) continue;
    const isZero = data === 0;
    const last = out[out.length - 1];
    if (last && !!last.zero === isZero && last.addr + last.pages * PAGE === at) last.pages += (next - at) / PAGE;
    else out.push({ addr: at, pages: (next - at) / PAGE, zero: isZero });
  }
  return out;
}

/** True when runs are sorted, disjoint, page-aligned and non-empty (what senders may assume). */
export function runsWellFormed(runs: readonly DirtyRun[]): boolean {
  let end = -1;
  for (const r of runs) {
    if (r.pages <= 0 || r.addr % PAGE !== 0 || r.addr < end) return false;
    end = r.addr + r.pages * PAGE;
  }
  return true;
}
