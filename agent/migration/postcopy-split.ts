// At a post-copy switchover, which pages of the last delta wait for after the resume: the data
// pages of anonymous private memory (what userfaultfd's missing mode can fill). Everything else
// of the delta (zero runs, private file pages) goes frozen as in pre-copy. The outstanding pages
// the workload also wrote in the round before are the hot ones, pushed first. The pages the
// restore itself makes the kernel write (each thread's rseq area, which its registration
// updates) go frozen too: a kernel write to a missing page would wait for the restoring agent.
import { type DirtyRun, PAGE, type ProcessDirty, type Span } from '../engine/memory/dirty/types.ts';
import type { OutstandingProcess } from './postcopy-source.ts';

/** Splits each process's runs into those sent now and those left for post-copy. */
export function splitForPostcopy(
  processes: readonly ProcessDirty[],
  previous: ReadonlyMap<number, readonly DirtyRun[]>,
  /** Per process, pages the restore's own kernel calls write (sent now whatever they are). */
  restoreWrites: ReadonlyMap<number, readonly Span[]> = new Map(),
): { now: ProcessDirty[]; later: OutstandingProcess[] } {
  const now: ProcessDirty[] = [];
  const later: OutstandingProcess[] = [];
  for (const p of processes) {
    const anon = minus(
      p.ranges.filter((r) => !r.file),
      restoreWrites.get(p.pid) ?? [],
    );
    const zero = p.runs.filter((r) => r.zero);
    const { inside: left, outside: fileOrHoles } = partition(
      p.runs.filter((r) => !r.zero),
      anon,
    );
    now.push({ ...p, runs: [...zero, ...fileOrHoles].sort((a, b) => a.addr - b.addr) });
    if (left.length === 0) continue;
    const prev = (previous.get(p.pid) ?? []).map((r) => ({ start: r.addr, end: r.addr + r.pages * PAGE }));
    const { inside: hot, outside: cold } = partition(left, prev);
    later.push({ pid: p.pid, hot, cold });
  }
  return { now, later };
}

/** `spans` without the pages of `holes` (both sorted), page-aligned outward for the holes. */
export function minus(spans: readonly Span[], holes: readonly Span[]): Span[] {
  let out = spans.map((s) => ({ ...s }));
  for (const h of holes) {
    const start = Math.floor(h.start / PAGE) * PAGE;
    const end = Math.ceil(h.end / PAGE) * PAGE;
    out = out.flatMap((s) => (s.end <= start || s.start >= end ? [s] : [...(s.start < start ? [{ start: s.start, end: start }] : []), ...(end < s.end ? [{ start: end, end: s.end }] : [])]));
  }
  return out;
}

/**
 * Runs (sorted, non-overlapping) split into the parts inside `spans` (sorted, non-overlapping)
 * and the parts outside: one sweep over both, however many there are of each.
 */
export function partition(runs: readonly DirtyRun[], spans: readonly Span[]): { inside: DirtyRun[]; outside: DirtyRun[] } {
  const inside: DirtyRun[] = [];
  const outside: DirtyRun[] = [];
  let j = 0;
  for (const run of runs) {
    const end = run.addr + run.pages * PAGE;
    while (j < spans.length && spans[j]!.end <= run.addr) j++;
    let k = j;
    let at = run.addr;
    const emit = (to: number, isInside: boolean) => {
      if (to > at) (isInside ? inside : outside).push({ addr: at, pages: (to - at) / PAGE, zero: run.zero });
      at = to;
    };
    while (k < spans.length && spans[k]!.start < end) {
      emit(Math.max(at, spans[k]!.start), false);
      emit(Math.min(end, spans[k]!.end), true);
      k++;
    }
    emit(end, false);
  }
  return { inside, outside };
}
