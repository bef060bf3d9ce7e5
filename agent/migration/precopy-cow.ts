// Copy-on-write sharing through a live migration (the source's half; the destination's is
// PrecopyDestination's pending processes). Writing each process's pages into its husk would give
// every process private copies. Instead the destination forks a process's husk from its parent's
// only when the stream says so (a `fork` frame), in the round that first scans the process and
// after its parent's frames of that round; the pages the two still share then are not sent to
// the child: it inherits them, as at a one-host restore (selectCowPages, Vma.inherit).
//
// Why what the child inherits is right: a shared frame cannot change while shared (any write
// copies it first), and a page cannot become shared again once a write split it. The check runs
// after the parent's pages of the round were read, so a page still shared then was that frame
// when the parent's copy was read (or, not dirty this round, when it was last read): the
// destination's parent holds exactly the child's content there. Whatever happens afterwards is
// an ordinary write the dirty tracker reports: the writer's page goes to the writer's husk, where
// the write splits the sharing just as it did at the source. Deeper trees chain (a grandchild
// inherits from its parent's husk, which holds its own or its inherited pages). Nothing here
// needs undoing on rollback: only which pages are sent changes, and pages are read through
// /proc/PID/mem, which leaves the source's sharing alone.
import { fromHex } from '../../shared/image-format.ts';
import type { LayoutProcess, PrecopyLayout } from '../../shared/precopy.ts';
import { O, closeFd, openFile } from '../ffi/syscalls.ts';
import { type Range, inheritable, sharedCowPages } from '../engine/memory/memory.ts';
import { type DirtyRound, type DirtyRun, PAGE, type ProcessDirty, type Span } from '../engine/memory/dirty/types.ts';
import type { RoundPlan } from '../transfer/pages.ts';

export class ForkCarry {
  /** Source pids the destination has a husk for (or makes one for by the end of the round in flight). */
  readonly #born = new Set<number>();

  /** The round's stream: parents first; each process first scanned is forked with its shared pages left out. */
  plan(round: DirtyRound, layout: PrecopyLayout): RoundPlan {
    const byHost = new Map(layout.processes.map((p) => [p.hostPid, p]));
    const byPid = new Map(layout.processes.map((p) => [p.pid, p]));
    for (const h of this.#born) if (!byHost.has(h)) this.#born.delete(h);
    const rank = (pid: number) => layout.processes.findIndex((p) => p.hostPid === pid) >>> 0; // not in the layout: last
    const order = [...round.processes].sort((a, b) => rank(a.pid) - rank(b.pid));
    return {
      order,
      keepShared: layout.processes.length > 1,
      prepare: (p: ProcessDirty) => {
        const me = byHost.get(p.pid);
        // Known already, or gone since the scan (the destination skips its pages).
        if (!me || this.#born.has(p.pid)) return { fork: false, runs: p.runs };
        this.#born.add(p.pid);
        const parent = byPid.get(me.ppid);
        if (!parent || !this.#born.has(parent.hostPid)) {
          // The root (its husk exists from the start), or a parent no round scanned (it shares
          // another's memory): the destination forks that one on demand now, holding nothing of its own.
          for (let up = parent; up && !this.#born.has(up.hostPid); up = byPid.get(up.ppid)) this.#born.add(up.hostPid);
          return { fork: true, runs: p.runs };
        }
        const shared = sharedWithParent(me, parent).map((r) => ({ start: Number(r.addr), end: Number(r.addr) + r.pages * PAGE }));
        const { keep, cut } = withoutPages(p.runs, shared);
        return { fork: true, runs: keep, inherit: cut };
      },
    };
  }
}

/** The pages of the child's inherited mappings that it still shares with its parent now (same frame in both pagemaps). */
function sharedWithParent(child: LayoutProcess, parent: LayoutProcess): Range[] {
  const twins = child.vmas.filter((v) => inheritable(v, parent.vmas));
  if (twins.length === 0) return [];
  let cpm = -1;
  let ppm = -1;
  try {
    cpm = openFile(`/proc/${child.hostPid}/pagemap`, O.RDONLY | O.CLOEXEC);
    ppm = openFile(`/proc/${parent.hostPid}/pagemap`, O.RDONLY | O.CLOEXEC);
    return twins.flatMap((v) => sharedCowPages(cpm, ppm, fromHex(v.start), fromHex(v.end)));
  } catch {
    // One of them exited meanwhile: nothing is left out, the child's pages all go.
    return [];
  } finally {
    for (const fd of [cpm, ppm]) if (fd >= 0) closeFd(fd);
  }
}

/**
 * Data runs with the given spans cut out (`keep`), and what was cut (`cut`: only pages the runs
 * had as data; a zero run stays, so a page both map to the kernel's zero page is not made real).
 * Both inputs sorted by address.
 */
export function withoutPages(runs: readonly DirtyRun[], spans: readonly Span[]): { keep: DirtyRun[]; cut: Span[] } {
  if (spans.length === 0) return { keep: [...runs], cut: [] };
  const keep: DirtyRun[] = [];
  const cut: Span[] = [];
  let i = 0;
  for (const r of runs) {
    if (r.zero) {
      keep.push(r);
      continue;
    }
    const end = r.addr + r.pages * PAGE;
    let at = r.addr;
    while (i < spans.length && spans[i]!.end <= at) i++;
    for (let k = i; k < spans.length && spans[k]!.start < end; k++) {
      const s = spans[k]!;
      if (s.start > at) keep.push({ addr: at, pages: (s.start - at) / PAGE, zero: false });
      const from = Math.max(at, s.start);
      const to = Math.min(end, s.end);
      if (to > from) {
        const last = cut[cut.length - 1];
        if (last && last.end === from) last.end = to;
        else cut.push({ start: from, end: to });
      }
      at = Math.max(at, s.end);
    }
    if (at < end) keep.push({ addr: at, pages: (end - at) / PAGE, zero: false });
  }
  return { keep, cut };
}
