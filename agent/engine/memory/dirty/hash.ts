// Fallback dirty tracking by content: every round reads each present page (in chunks of up to
// 4 MiB, scattered spans gathered by one process_vm_readv) and compares a 64-bit hash with the
// hash of what was last *sent* for that address. Keying on the sent content (noteSent) rather
// than on the previous scan is what keeps it exact: a page changed after the scan and changed
// back before the next one (a lock word: 0, 1, 0) still differs from what the receiver holds.
import { setImmediate as yieldNow } from 'node:timers/promises';
import { addressOf } from '../../../ffi/libc.ts';
import { O, closeFd, isErrno, openFile } from '../../../ffi/syscalls.ts';
import { PAGE_IS, PagemapScanner, type ScanRegion } from '../../../ffi/uffd.ts';
import { xxh3 } from '../../../ffi/xxhash.ts';
import { selectPages } from '../memory.ts';
import { readMaps } from '../../process/procfs.ts';
import { normalizeRuns, trackedRanges } from './ranges.ts';
import { readPages } from './read.ts';
import { type DirtyRun, PAGE, type ProcessDirty, type ProcessTracker, type Span, type TrackedRange } from './types.ts';

/** Hashes `pages` consecutive pages of `buf` into out[0..pages). */
export interface PageHasher {
  readonly name: string;
  hashPages(buf: Buffer, pages: number, out: BigUint64Array): void;
}

/** libxxhash's XXH3-64, one FFI call per page at the page's raw address. */
export function xxh3Hasher(): PageHasher | null {
  const fn = xxh3();
  if (!fn) return null;
  return {
    name: 'xxh3 (libxxhash)',
    hashPages(buf, pages, out) {
      const base = Number(addressOf(buf));
      for (let p = 0; p < pages; p++) out[p] = fn(base + p * PAGE, PAGE);
    },
  };
}

/**
 * Two 32-bit multiply-xor lanes over the page's words (5 GB/s in V8), for hosts without
 * libxxhash. Weaker mixing than XXH3 but position-dependent and 64 bits wide.
 */
export const jsHasher: PageHasher = {
  name: 'js imul64',
  hashPages(buf, pages, out) {
    const words = new Int32Array(buf.buffer, buf.byteOffset, (pages * PAGE) / 4);
    const halves = new Uint32Array(out.buffer, out.byteOffset, pages * 2);
    for (let p = 0; p < pages; p++) {
      let h1 = 0x9e3779b9 | 0;
      let h2 = 0x85ebca6b | 0;
      const s = p * 1024;
      for (let i = s; i < s + 1024; i += 2) {
        h1 = (Math.imul(h1 ^ words[i]!, 0x01000193) + (h1 >>> 15)) | 0;
        h2 = (Math.imul(h2 ^ words[i + 1]!, 0x5bd1e995) + (h2 >>> 13)) | 0;
      }
      halves[p * 2] = Math.imul(h1 ^ (h2 >>> 16), 0x85ebca6b) >>> 0;
      halves[p * 2 + 1] = Math.imul(h2 ^ (h1 >>> 13), 0xc2b2ae35) >>> 0;
    }
  },
};

export const defaultHasher = (): PageHasher => xxh3Hasher() ?? jsHasher;

const CHUNK_PAGES = 512; // state is kept per 2 MiB of address space
const UNKNOWN = 0;
const ZERO = 1;
const HASHED = 2;

/** State of 512 pages; null arrays mean "all zero" (a sparse region costs no per-page memory). */
interface Chunk {
  state: Uint8Array | null;
  hash: BigUint64Array | null;
}

const READ_BYTES = 4 * 1024 * 1024;
const YIELD_BYTES = 64 * 1024 * 1024;

export interface HashTrackerOptions {
  /** Find present pages with PAGEMAP_SCAN (Linux 6.7+) instead of reading /proc/PID/pagemap. */
  pagemapScan: boolean;
  hasher?: PageHasher;
}

export class HashTracker implements ProcessTracker {
  readonly method = 'hash' as const;
  private readonly chunks = new Map<number, Chunk>();
  private readonly hasher: PageHasher;
  private readonly zeroHash: bigint;
  private readonly buf = Buffer.alloc(READ_BYTES, 1); // touched once: reads into it run at full speed
  private readonly hashes = new BigUint64Array(READ_BYTES / PAGE);
  private sentHashes = new BigUint64Array(256);
  private readonly scanner: PagemapScanner | null;
  /** Opened for each scan: a pagemap fd stays bound to the mm it was opened on, and exec replaces the mm. */
  private pagemap = -1;
  /** /proc/PID/mem, opened with pagemap: pages are read through it (readPages: it keeps copy-on-write sharing). */
  private mem = -1;

  constructor(
    readonly pid: number,
    opts: HashTrackerOptions,
  ) {
    this.hasher = opts.hasher ?? defaultHasher();
    this.hasher.hashPages(Buffer.alloc(PAGE), 1, this.hashes);
    this.zeroHash = this.hashes[0]!;
    this.scanner = opts.pagemapScan ? new PagemapScanner() : null;
  }

  get hasherName(): string {
    return this.hasher.name;
  }

  /**
   * Content comparison heals itself: whatever a round gets wrong while the process changes under
   * it (an exec between opening pagemap and reading maps) differs from what was sent and goes
   * again next round. A pagemap whose mm vanished mid-scan (ESRCH) is reopened once.
   */
  async scan(): Promise<ProcessDirty> {
    for (let attempt = 0; ; attempt++) {
      this.pagemap = openFile(`/proc/${this.pid}/pagemap`, O.RDONLY | O.CLOEXEC);
      try {
        this.mem = openFile(`/proc/${this.pid}/mem`, O.RDONLY | O.CLOEXEC);
        return await this.scanWith();
      } catch (err) {
        if (attempt > 0 || !isErrno(err, 'ESRCH')) throw err;
      } finally {
        closeFd(this.pagemap);
        this.pagemap = -1;
        if (this.mem >= 0) closeFd(this.mem);
        this.mem = -1;
      }
    }
  }

  private async scanWith(): Promise<ProcessDirty> {
    const ranges = trackedRanges(readMaps(this.pid));
    this.forgetOutside(ranges);
    const runs: DirtyRun[] = [];
    let scanned = 0;
    let sinceYield = 0;
    for (const r of ranges) {
      const present = r.file ? [{ start: r.start, end: r.end }] : this.presentSpans(r);
      if (!r.file) this.zeroGaps(r, present, runs);
      for (const batch of batches(present)) {
        scanned += this.compareBatch(batch, runs);
        sinceYield += batch.bytes;
        if (sinceYield >= YIELD_BYTES) {
          sinceYield = 0;
          await yieldNow(); // a GiB takes a quarter second: let the agent's event loop breathe
        }
      }
    }
    return { pid: this.pid, method: this.method, ranges, runs: normalizeRuns(runs), pagesScanned: scanned };
  }

  /** Present (or swapped) pages of an anonymous range, without the shared zero page. */
  private presentSpans(r: Span): Span[] {
    if (this.scanner) {
      const regions: ScanRegion[] = [];
      this.scanner.scan(
        this.pagemap,
        {
          flags: 0,
          start: r.start,
          end: r.end,
          categoryInverted: PAGE_IS.PFNZERO,
          categoryMask: PAGE_IS.PFNZERO,
          categoryAnyof: PAGE_IS.PRESENT | PAGE_IS.SWAPPED,
          returnMask: PAGE_IS.PRESENT | PAGE_IS.SWAPPED,
        },
        regions,
      );
      return regions.map((g) => ({ start: g.start, end: g.end }));
    }
    const out: Span[] = [];
    const window = 1 << 30; // pagemap holds 8 bytes a page: read it a GiB of address space at a time
    for (let s = r.start; s < r.end; s += window) {
      for (const x of selectPages(this.pagemap, BigInt(s), BigInt(Math.min(r.end, s + window)), false)) {
        const start = Number(x.addr);
        const last = out[out.length - 1];
        if (last && last.end === start) last.end = start + x.pages * PAGE;
        else out.push({ start, end: start + x.pages * PAGE });
      }
    }
    return out;
  }

  /** Pages of an anonymous range with no page of their own read as zeros: say so once. */
  private zeroGaps(r: Span, present: readonly Span[], runs: DirtyRun[]): void {
    let at = r.start;
    for (const p of [...present, { start: r.end, end: r.end }]) {
      if (p.start > at) this.markZero(at, p.start, runs);
      at = Math.max(at, p.end);
    }
  }

  private markZero(start: number, end: number, runs: DirtyRun[]): void {
    for (let a = start; a < end; ) {
      const page = a / PAGE;
      const key = Math.floor(page / CHUNK_PAGES);
      const chunkEnd = (key + 1) * CHUNK_PAGES * PAGE;
      const stop = Math.min(end, chunkEnd);
      const c = this.chunks.get(key);
      const whole = a === key * CHUNK_PAGES * PAGE && stop === chunkEnd;
      if (!c || (c.state && whole)) {
        runs.push({ addr: a, pages: (stop - a) / PAGE, zero: true });
        if (whole) this.chunks.set(key, { state: null, hash: null });
        else this.materialize(key).state!.fill(ZERO, page % CHUNK_PAGES, page % CHUNK_PAGES + (stop - a) / PAGE);
      } else if (c.state) {
        for (let i = page % CHUNK_PAGES, x = a; x < stop; i++, x += PAGE) {
          if (c.state[i] === ZERO) continue;
          c.state[i] = ZERO;
          runs.push({ addr: x, pages: 1, zero: true });
        }
      }
      a = stop;
    }
  }

  /** Reads one batch of spans, hashes every page and reports those that differ from what was sent. */
  private compareBatch(batch: Batch, runs: DirtyRun[]): number {
    const ok = readPages(this.pid, batch.spans, this.buf, this.mem);
    this.hasher.hashPages(this.buf, ok.length, this.hashes);
    let i = 0;
    let read = 0;
    for (const s of batch.spans) {
      for (let a = s.start; a < s.end; a += PAGE, i++) {
        // An unreadable page was unmapped meanwhile (the next round's maps tell) or lies past a file's end.
        if (ok[i] === 0) continue;
        read++;
        const page = a / PAGE;
        const c = this.chunks.get(Math.floor(page / CHUNK_PAGES));
        const k = page % CHUNK_PAGES;
        const clean = c && (c.state ? c.state[k] === HASHED && c.hash![k] === this.hashes[i] : this.hashes[i] === this.zeroHash);
        if (clean) continue;
        const last = runs[runs.length - 1];
        if (last && !last.zero && last.addr + last.pages * PAGE === a) last.pages++;
        else runs.push({ addr: a, pages: 1, zero: false });
      }
    }
    return read;
  }

  /** Records what the receiver now holds for these pages. */
  noteSent(addr: number, data: Buffer): void {
    const pages = data.length / PAGE;
    if (this.sentHashes.length < pages) this.sentHashes = new BigUint64Array(pages);
    const hashes = this.sentHashes;
    this.hasher.hashPages(data, pages, hashes);
    for (let i = 0; i < pages; i++) {
      const page = addr / PAGE + i;
      const c = this.materialize(Math.floor(page / CHUNK_PAGES));
      const k = page % CHUNK_PAGES;
      const h = hashes[i]!;
      c.state![k] = h === this.zeroHash ? ZERO : HASHED;
      c.hash![k] = h;
    }
  }

  private materialize(key: number): Chunk {
    let c = this.chunks.get(key);
    if (!c) {
      c = { state: new Uint8Array(CHUNK_PAGES).fill(UNKNOWN), hash: new BigUint64Array(CHUNK_PAGES) };
      this.chunks.set(key, c);
    } else if (!c.state) {
      c.state = new Uint8Array(CHUNK_PAGES).fill(ZERO);
      c.hash = new BigUint64Array(CHUNK_PAGES).fill(this.zeroHash);
    }
    return c;
  }

  /**
   * Drops state for address space no tracked range covers (it only bounds memory: a range that
   * comes back is sent whole, which is always right because receivers keep what they got).
   */
  private forgetOutside(ranges: readonly TrackedRange[]): void {
    const keep = new Set<number>();
    for (const r of ranges) for (let k = Math.floor(r.start / PAGE / CHUNK_PAGES); k * CHUNK_PAGES * PAGE < r.end; k++) keep.add(k);
    for (const k of this.chunks.keys()) if (!keep.has(k)) this.chunks.delete(k);
  }

  stop(): void {
    this.chunks.clear();
  }
}

interface Batch {
  spans: Span[];
  bytes: number;
}

/** Groups spans into reads of at most READ_BYTES (long spans are cut). */
function* batches(spans: readonly Span[]): Generator<Batch> {
  let cur: Batch = { spans: [], bytes: 0 };
  for (const s of spans) {
    for (let a = s.start; a < s.end; ) {
      const take = Math.min(s.end - a, READ_BYTES - cur.bytes);
      cur.spans.push({ start: a, end: a + take });
      cur.bytes += take;
      a += take;
      if (cur.bytes === READ_BYTES) {
        yield cur;
        cur = { spans: [], bytes: 0 };
      }
    }
  }
  if (cur.bytes > 0) yield cur;
}
