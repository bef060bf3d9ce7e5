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
    const keep: DirtyRun[] = [];
    const left: DirtyRun[] = [];
    for (const run of p.runs) {
      if (run.zero) {
        keep.push(run);
        continue;
      }
      for (const part of cut(run, anon)) (part.inside ? left : keep).push(part.run);
    }
    now.push({ ...p, runs: keep });
    if (left.length === 0) continue;
    const hot: DirtyRun[] = [];
    const cold: DirtyRun[] = [];
    const prev = previous.get(p.pid) ?? [];
    for (const run of left) for (const part of cut(run, prev.map((r) => ({ start: r.addr, end: r.addr + r.pages * PAGE })))) (part.inside ? hot : cold).push(part.run);
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

/** A run cut at the edges of `spans` (sorted, non-overlapping): each part inside one of them or outside all. */
export function cut(run: DirtyRun, spans: readonly Span[]): { run: DirtyRun; inside: boolean }[] {
  const out: { run: DirtyRun; inside: boolean }[] = [];
  const end = run.addr + run.pages * PAGE;
  let at = run.addr;
  const emit = (to: number, inside: boolean) => {
    if (to > at) out.push({ run: { addr: at, pages: (to - at) / PAGE, zero: run.zero }, inside });
    at = to;
  };
  for (const s of spans) {
    if (s.end <= at) continue;
    if (s.start >= end) break;
    emit(Math.max(at, s.start), false);
    emit(Math.min(end, s.end), true);
  }
  emit(end, false);
  return out;
}
