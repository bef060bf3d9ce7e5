// Page selection and page copying. Exposed as ranges so the migration path can copy memory in
// rounds (pre-copy) with the same functions the one-shot checkpoint uses.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type PageRun, type Vma, toHex } from '../../../shared/image-format.ts';
import { isErrno, pread, vmRead, vmWrite } from '../../ffi/syscalls.ts';
import { PAGE_IS, PagemapScanner, type ScanRegion } from '../../ffi/uffd.ts';

export const PAGE = 4096;
const PAGE_N = BigInt(PAGE);
/** Runs are capped so a checksum covers a bounded amount of data and buffers stay reused. */
export const MAX_RUN_PAGES = 256;

export interface Range {
  addr: bigint;
  pages: number;
}

/**
 * Pages of [start, end) that hold data of their own: present or swapped, and for private file
 * mappings only the anonymous (copied-on-write) ones; file pages are re-read from the file.
 * Guard regions (MADV_GUARD_INSTALL markers: bit 58, shown as swapped too) hold no data; they go
 * to `guards` when given.
 */
export function selectPages(pagemapFd: number, start: bigint, end: bigint, onlyAnon: boolean, guards?: Range[]): Range[] {
  const n = Number((end - start) / PAGE_N);
  const raw = Buffer.alloc(n * 8);
  const got = readSync(pagemapFd, raw, 0, raw.length, Number((start / PAGE_N) * 8n));
  const words = new Uint32Array(raw.buffer, raw.byteOffset, got / 4);
  const out: Range[] = [];
  let runStart = -1;
  const flush = (i: number) => {
    for (let s = runStart; s < i; s += MAX_RUN_PAGES) out.push({ addr: start + BigInt(s) * PAGE_N, pages: Math.min(MAX_RUN_PAGES, i - s) });
    runStart = -1;
  };
  for (let i = 0; i < got / 8; i++) {
    const hi = words[i * 2 + 1]!;
    // bit 63 present, 62 swapped, 61 file-page or shared-anon, 58 guard region
    const guard = (hi & 0x04000000) !== 0;
    if (guard && guards) {
      const last = guards[guards.length - 1];
      const addr = start + BigInt(i) * PAGE_N;
      if (last && last.addr + BigInt(last.pages) * PAGE_N === addr) last.pages++;
      else guards.push({ addr, pages: 1 });
    }
    const has = !guard && (hi & 0xc0000000) !== 0 && (!onlyAnon || (hi & 0x20000000) === 0);
    if (has && runStart < 0) runStart = i;
    else if (!has && runStart >= 0) flush(i);
  }
  if (runStart >= 0) flush(got / 8);
  return out;
}

let guardScanner: PagemapScanner | null = null;

/**
 * Only the guard regions of [start, end), for a mapping whose pages are not read here (they
 * went during pre-copy): PAGEMAP_SCAN's PAGE_IS_GUARD finds them without a walk in JS over
 * every page while the tree is frozen. A kernel without that category (before 6.14) rejects it;
 * its pagemap is read instead.
 */
export function findGuards(pagemapFd: number, start: bigint, end: bigint): Range[] {
  guardScanner ??= new PagemapScanner(64);
  const found: ScanRegion[] = [];
  try {
    guardScanner.scan(pagemapFd, { flags: 0, start: Number(start), end: Number(end), categoryAnyof: PAGE_IS.GUARD, returnMask: PAGE_IS.GUARD }, found);
  } catch (err) {
    if (!isErrno(err, 'EINVAL')) throw err;
    const guards: Range[] = [];
    selectPages(pagemapFd, start, end, false, guards);
    return guards;
  }
  return found.map((r) => ({ addr: BigInt(r.start), pages: (r.end - r.start) / PAGE }));
}

const ZERO = Buffer.alloc(PAGE);

/** Appends page data to one process's pages file and returns the runs it wrote. */
export class PagesWriter {
  private fd: number;
  offset = 0;
  private buf = Buffer.alloc(MAX_RUN_PAGES * PAGE);
  constructor(path: string, opts: { append?: number } = {}) {
    // Appending starts at the file's known end, never truncating what is there (a pages store).
    this.fd = openSync(path, opts.append === undefined ? 'w' : 'r+');
    this.offset = opts.append ?? 0;
  }

  /** A writer adding to an existing file from byte `at` on. */
  static appending(path: string, at: number): PagesWriter {
    return new PagesWriter(path, { append: at });
  }

  /**
   * Copies ranges out of the task; all-zero pages are left out when the mapping starts zero-filled.
   * memFd: the task's /proc/PID/mem, read instead of process_vm_readv: it reads PROT_NONE pages
   * too, and it does not pin pages (a read-only pin un-shares a page a parent shares with its
   * child copy-on-write, so the workload would grow and the sharing could not be restored).
   */
  dump(pid: number, ranges: readonly Range[], skipZero: boolean, memFd?: number): PageRun[] {
    const runs: PageRun[] = [];
    for (const r of ranges) {
      const len = r.pages * PAGE;
      const view = this.buf.subarray(0, len);
      if (memFd === undefined) vmRead(pid, r.addr, view);
      else if (pread(memFd, view, Number(r.addr)) !== len) throw new FerryError(ErrorCode.Internal, `pid ${pid}: short read of /proc/${pid}/mem at ${toHex(r.addr)}`);
      let s = -1;
      const emit = (from: number, to: number) => {
        const chunk = view.subarray(from * PAGE, to * PAGE);
        writeSync(this.fd, chunk, 0, chunk.length, this.offset);
        runs.push({ addr: toHex(r.addr + BigInt(from) * PAGE_N), pages: to - from, offset: this.offset, crc32: crc32(chunk) });
        this.offset += chunk.length;
      };
      if (!skipZero) {
        emit(0, r.pages);
        continue;
      }
      for (let p = 0; p < r.pages; p++) {
        const zero = view.subarray(p * PAGE, (p + 1) * PAGE).equals(ZERO);
        if (!zero && s < 0) s = p;
        else if (zero && s >= 0) {
          emit(s, p);
          s = -1;
        }
      }
      if (s >= 0) emit(s, r.pages);
    }
    return runs;
  }

  /**
   * Copies a whole shared memory object from a file that names it (/proc/PID/map_files/...,
   * /proc/PID/fd/N); run addresses are offsets into the object, zero pages stay out.
   */
  dumpFile(path: string, size: number): PageRun[] {
    const src = openSync(path, 'r');
    const runs: PageRun[] = [];
    try {
      for (let off = 0; off < size; off += this.buf.length) {
        const len = Math.min(this.buf.length, Math.ceil((size - off) / PAGE) * PAGE);
        const view = this.buf.subarray(0, len);
        view.fill(0);
        readSync(src, view, 0, Math.min(len, size - off), off);
        let s = -1;
        const pages = len / PAGE;
        for (let p = 0; p <= pages; p++) {
          const zero = p === pages || view.subarray(p * PAGE, (p + 1) * PAGE).equals(ZERO);
          if (!zero && s < 0) s = p;
          else if (zero && s >= 0) {
            const chunk = view.subarray(s * PAGE, p * PAGE);
            writeSync(this.fd, chunk, 0, chunk.length, this.offset);
            runs.push({ addr: toHex(off + s * PAGE), pages: p - s, offset: this.offset, crc32: crc32(chunk) });
            this.offset += chunk.length;
            s = -1;
          }
        }
      }
    } finally {
      closeSync(src);
    }
    return runs;
  }

  /** Appends a run read from another pages file; the same run at its new offset. */
  copy(run: PageRun, data: Buffer): PageRun {
    writeSync(this.fd, data, 0, data.length, this.offset);
    const out = { ...run, offset: this.offset };
    this.offset += data.length;
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Reads runs from a pages file, checks each checksum, and writes them into a task. */
export class PagesReader {
  private fd: number;
  private buf = Buffer.alloc(MAX_RUN_PAGES * PAGE);
  bytes = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
  }

  read(run: PageRun): Buffer {
    const len = run.pages * PAGE;
    if (len > this.buf.length) this.buf = Buffer.alloc(len);
    const view = this.buf.subarray(0, len);
    const got = readSync(this.fd, view, 0, len, run.offset);
    if (got !== len || crc32(view) !== run.crc32)
      throw new FerryError(ErrorCode.BadImage, `${this.path}: page run at ${run.addr} is ${got !== len ? 'truncated' : 'corrupt (checksum mismatch)'}`, {
        details: { file: this.path, addr: run.addr, offset: run.offset },
      });
    return view;
  }

  writeInto(pid: number, run: PageRun): void {
    vmWrite(pid, BigInt(run.addr), this.read(run));
    this.bytes += run.pages * PAGE;
  }

  close(): void {
    closeSync(this.fd);
  }
}

const PFN_MASK = (1n << 55n) - 1n;

function readPagemap(pagemapFd: number, start: bigint, end: bigint): BigUint64Array {
  const n = Number((end - start) / PAGE_N);
  const raw = Buffer.alloc(n * 8);
  const got = readSync(pagemapFd, raw, 0, raw.length, Number((start / PAGE_N) * 8n));
  return new BigUint64Array(raw.buffer, raw.byteOffset, got / 8);
}

function pushPage(out: Range[], addr: bigint, maxPages = Number.MAX_SAFE_INTEGER): void {
  const last = out[out.length - 1];
  if (last && last.pages < maxPages && last.addr + BigInt(last.pages) * PAGE_N === addr) last.pages++;
  else out.push({ addr, pages: 1 });
}

/**
 * Whether a child's and its parent's pagemap entries for one address name the same frame: a
 * page they still share copy-on-write since the fork (pagemap shows frames to CAP_SYS_ADMIN
 * only; without it every frame reads 0 and nothing counts as shared).
 */
function sharesFrame(ce: bigint, pe: bigint): boolean {
  const pfn = ce & PFN_MASK;
  return (ce >> 63n) !== 0n && (pe >> 63n) !== 0n && pfn !== 0n && pfn === (pe & PFN_MASK);
}

/**
 * A child's mapping that is its parent's, inherited at fork, page by page (needs the PFNs of
 * pagemap, i.e. CAP_SYS_ADMIN): pages still shared copy-on-write with the parent (same frame)
 * travel with the parent only; `own` are the child's own pages; `zero` the pages the child does
 * not have where the parent has one (the restored child must drop what it inherits there).
 */
export function selectCowPages(childPm: number, parentPm: number, start: bigint, end: bigint): { own: Range[]; zero: Range[]; guards: Range[]; shared: number } {
  const c = readPagemap(childPm, start, end);
  const p = readPagemap(parentPm, start, end);
  const own: Range[] = [];
  const zero: Range[] = [];
  const guards: Range[] = [];
  let shared = 0;
  for (let i = 0; i < c.length; i++) {
    const addr = start + BigInt(i) * PAGE_N;
    const ce = c[i]!;
    const pe = p[i] ?? 0n;
    const has = (e: bigint) => (e >> 62n) !== 0n; // present or swapped
    if ((ce >> 58n) & 1n) {
      pushPage(guards, addr);
      continue;
    }
    if (sharesFrame(ce, pe)) shared++;
    else if (has(ce)) pushPage(own, addr, MAX_RUN_PAGES);
    else if (has(pe) && !((pe >> 58n) & 1n)) pushPage(zero, addr);
  }
  return { own, zero, guards, shared };
}

/** Only the pages of [start, end) a child still shares with its parent (selectCowPages' shared ones), as ranges. */
export function sharedCowPages(childPm: number, parentPm: number, start: bigint, end: bigint): Range[] {
  const c = readPagemap(childPm, start, end);
  const p = readPagemap(parentPm, start, end);
  const out: Range[] = [];
  for (let i = 0; i < c.length; i++) if (sharesFrame(c[i]!, p[i] ?? 0n)) pushPage(out, start + BigInt(i) * PAGE_N);
  return out;
}

/** What decides whether a child's mapping is the one it inherited from its parent. */
export type ForkedVma = Pick<Vma, 'start' | 'end' | 'kind'> & Partial<Pick<Vma, 'advice' | 'growsDown' | 'precopied'>>;

/**
 * A child's anonymous mapping that fork gave it: the parent has one with the same range, kind
 * and mapping flags (a DONTFORK or WIPEONFORK one is not inherited as it is).
 */
export function inheritable(v: ForkedVma, parentVmas: readonly ForkedVma[]): boolean {
  if (!['anon', 'heap', 'stack'].includes(v.kind)) return false;
  const u = parentVmas.find((x) => x.start === v.start && x.end === v.end);
  if (!u || u.kind !== v.kind || u.precopied) return false;
  const flags = (x: ForkedVma) => JSON.stringify([x.advice ?? [], x.growsDown ?? false]);
  return flags(u) === flags(v) && !(u.advice ?? []).some((a) => a === 'dc' || a === 'wf');
}
