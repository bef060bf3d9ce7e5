// Which pages of one restored process still wait for their content from the source during
// post-copy, keyed by where they are now, each knowing where it was at the source (the source
// serves pages by the address the frozen process has them at). What the workload does to its
// memory meanwhile changes that, as userfaultfd's events tell: madvise(DONTNEED) and munmap
// drop pages (a page the workload threw away must read as zeros, never as the source's stale
// copy), mremap moves them, and fork gives the child a copy of the set (postcopy-destination.ts).
import { PAGE, type Span } from '../engine/memory/dirty/types.ts';

export class MissingPages {
  /** Page address now -> page address at the source. */
  readonly #src = new Map<number, number>();
  /** The reverse: page address at the source -> now. */
  readonly #cur = new Map<number, number>();

  constructor(runs: readonly Span[] = []) {
    for (const r of runs) for (let a = r.start; a < r.end; a += PAGE) this.#set(a, a);
  }

  #set(cur: number, src: number): void {
    this.#src.set(cur, src);
    this.#cur.set(src, cur);
  }

  get size(): number {
    return this.#src.size;
  }

  /** The source address of the page at `cur` (page-aligned), if it still waits for it. */
  sourceOf(cur: number): number | undefined {
    return this.#src.get(cur);
  }

  /** Where the source's page at `src` is now, if it still waits for it. */
  currentOf(src: number): number | undefined {
    return this.#cur.get(src);
  }

  /** The page at `cur` has its content now (or needs none). */
  delete(cur: number): void {
    const src = this.#src.get(cur);
    if (src === undefined) return;
    this.#src.delete(cur);
    this.#cur.delete(src);
  }

  /** Every waiting page in [start, end) is gone (dropped or unmapped by the workload). */
  removeRange(start: number, end: number): void {
    for (const cur of this.#inRange(start, end)) this.delete(cur);
  }

  /** mremap moved [from, from+len) to [to, to+len): the waiting pages moved with it. */
  remap(from: number, to: number, len: number): void {
    const moved = this.#inRange(from, from + len).map((cur) => [cur, this.#src.get(cur)!] as const);
    for (const [cur] of moved) this.delete(cur);
    // Whatever waited at the destination range was unmapped by the move.
    this.removeRange(to, to + len);
    for (const [cur, src] of moved) this.#set(cur - from + to, src);
  }

  /** A forked child's set: the same pages, at the same addresses. */
  clone(): MissingPages {
    const c = new MissingPages();
    for (const [cur, src] of this.#src) c.#set(cur, src);
    return c;
  }

  /** The waiting pages, by current address, as source addresses in runs (what to ask for). */
  sources(): number[] {
    return [...this.#cur.keys()];
  }

  #inRange(start: number, end: number): number[] {
    const first = Math.floor(start / PAGE) * PAGE;
    if ((end - first) / PAGE <= this.#src.size) {
      const out: number[] = [];
      for (let a = first; a < end; a += PAGE) if (this.#src.has(a)) out.push(a);
      return out;
    }
    return [...this.#src.keys()].filter((a) => a >= first && a < end);
  }
}
