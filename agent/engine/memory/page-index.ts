// Where each page of a process lives in an append-only pages store (incremental checkpoints,
// agent/jobs/live-image.ts): sorted, non-overlapping runs of consecutive pages stored
// consecutively. A page written again moves to its new place; the run it left is trimmed, and a
// trimmed run's checksum is recomputed from the store when an image needs it (`crc32` -1 until then).
import { PAGE, type Span } from './dirty/types.ts';

/** Pages [addr, addr + pages*PAGE) stored at `offset` of the process's store file. */
export interface StoredRun {
  addr: number;
  pages: number;
  offset: number;
  /** CRC-32 of the run's bytes, or -1 when the run was cut out of a longer one and is not known yet. */
  crc32: number;
}

const endOf = (r: { addr: number; pages: number }): number => r.addr + r.pages * PAGE;

/** A piece [start, end) of a stored run (checksum unknown unless it is the whole run). */
function piece(r: StoredRun, start: number, end: number): StoredRun {
  if (start === r.addr && end === endOf(r)) return r;
  return { addr: start, pages: (end - start) / PAGE, offset: r.offset + (start - r.addr), crc32: -1 };
}

/** What of `runs` lies outside every span (both sorted by address, non-overlapping). */
export function subtractSpans(runs: readonly StoredRun[], spans: readonly Span[]): StoredRun[] {
  const out: StoredRun[] = [];
  let j = 0;
  for (const r of runs) {
    let at = r.addr;
    const end = endOf(r);
    while (j < spans.length && spans[j]!.end <= at) j++;
    let k = j;
    while (at < end && k < spans.length && spans[k]!.start < end) {
      const s = spans[k]!;
      if (s.start > at) out.push(piece(r, at, s.start));
      at = Math.max(at, s.end);
      if (s.end <= end) k++;
      else break;
    }
    if (at < end) out.push(piece(r, at, end));
  }
  return out;
}

/** What of `runs` lies inside the spans (both sorted by address, non-overlapping). */
export function intersectSpans(runs: readonly StoredRun[], spans: readonly Span[]): StoredRun[] {
  const out: StoredRun[] = [];
  let j = 0;
  for (const r of runs) {
    const end = endOf(r);
    while (j < spans.length && spans[j]!.end <= r.addr) j++;
    for (let k = j; k < spans.length && spans[k]!.start < end; k++) {
      const s = Math.max(r.addr, spans[k]!.start);
      const e = Math.min(end, spans[k]!.end);
      if (s < e) out.push(piece(r, s, e));
    }
  }
  return out;
}

/** One process's stored pages: absent pages read as zeros. */
export class PageIndex {
  #runs: StoredRun[] = [];

  get runs(): readonly StoredRun[] {
    return this.#runs;
  }

  /** Bytes of page data the index refers to (the live part of the store). */
  get bytes(): number {
    return this.#runs.reduce((a, r) => a + r.pages * PAGE, 0);
  }

  /**
   * One round: `cleared` spans lose their pages (they read as zeros now, or could not be read),
   * `written` runs (sorted, non-overlapping) take their place; everything outside `kept` goes
   * (the mappings the process has now).
   */
  apply(written: readonly StoredRun[], cleared: readonly Span[], kept: readonly Span[]): void {
    const gone = [...written.map((r) => ({ start: r.addr, end: endOf(r) })), ...cleared].sort((a, b) => a.start - b.start);
    const left = subtractSpans(this.#runs, mergeSpans(gone));
    const merged = [...left, ...written].sort((a, b) => a.addr - b.addr);
    this.#runs = intersectSpans(merged, mergeSpans([...kept].sort((a, b) => a.start - b.start)));
  }

  /** Every run at once (the same pages, stored elsewhere). */
  replace(runs: StoredRun[]): void {
    this.#runs = runs;
  }

  /** The stored runs inside [start, end), cut at its edges. */
  within(start: number, end: number): StoredRun[] {
    return intersectSpans(this.#runs, [{ start, end }]);
  }

  /** Fills in unknown checksums in place (`crcOf` reads the run from the store). */
  resolve(crcOf: (r: StoredRun) => number): void {
    for (const r of this.#runs) if (r.crc32 < 0) r.crc32 = crcOf(r);
  }
}

/** Sorted spans with overlapping and touching ones joined. */
export function mergeSpans(sorted: readonly Span[]): Span[] {
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out.at(-1);
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ start: s.start, end: s.end });
  }
  return out;
}
