// userfaultfd write-protect (async mode) and the PAGEMAP_SCAN ioctl of /proc/PID/pagemap: the
// kernel ABI for tracking which pages a process writes, declared once. Layouts are byte offsets
// into Buffers (see libc.ts); every Buffer whose address goes into a struct is kept referenced
// by the caller's scope until the ioctl returns.
import { addressOf } from './libc.ts';
import { SyscallError, ioctl } from './syscalls.ts';

/** userfaultfd(2) flags: O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY (needed when the target is not root). */
export const UFFD_OPEN_FLAGS = 0o2000000 | 0o4000 | 1;

export const UFFD_API = 0xaan;
export const UFFD_FEATURE = { WP_UNPOPULATED: 1n << 13n, WP_ASYNC: 1n << 15n } as const;
const UFFDIO_API = 0xc018aa3f;
const UFFDIO_REGISTER = 0xc020aa00;
const UFFDIO_WRITEPROTECT = 0xc018aa06;
const UFFDIO_REGISTER_MODE_WP = 2n;
const UFFDIO_WRITEPROTECT_MODE_WP = 1n;

/** UFFDIO_API handshake; returns the ioctls the kernel offers. Throws when a feature is missing (EINVAL). */
export function uffdApi(fd: number, features: bigint): bigint {
  const api = Buffer.alloc(24);
  api.writeBigUInt64LE(UFFD_API, 0);
  api.writeBigUInt64LE(features, 8);
  ioctl(fd, UFFDIO_API, api);
  return api.readBigUInt64LE(16);
}

/** Registers [start, start+len) for write-protect tracking; harmless on a range already registered. */
export function uffdRegisterWp(fd: number, start: number, len: number): void {
  const reg = Buffer.alloc(32);
  reg.writeBigUInt64LE(BigInt(start), 0);
  reg.writeBigUInt64LE(BigInt(len), 8);
  reg.writeBigUInt64LE(UFFDIO_REGISTER_MODE_WP, 16);
  ioctl(fd, UFFDIO_REGISTER, reg);
}

/** Write-protects (or unprotects) a registered range; with WP_UNPOPULATED also the pages not yet touched. */
export function uffdWriteProtect(fd: number, start: number, len: number, on = true): void {
  const wp = Buffer.alloc(24);
  wp.writeBigUInt64LE(BigInt(start), 0);
  wp.writeBigUInt64LE(BigInt(len), 8);
  wp.writeBigUInt64LE(on ? UFFDIO_WRITEPROTECT_MODE_WP : 0n, 16);
  ioctl(fd, UFFDIO_WRITEPROTECT, wp);
}

export const PAGEMAP_SCAN = 0xc0606610;
export const PM_SCAN = { WP_MATCHING: 1, CHECK_WPASYNC: 2 } as const;
/** Page categories of PAGEMAP_SCAN (include/uapi/linux/fs.h). */
export const PAGE_IS = { WPALLOWED: 1, WRITTEN: 2, FILE: 4, PRESENT: 8, SWAPPED: 16, PFNZERO: 32, HUGE: 64, SOFT_DIRTY: 128, GUARD: 256 } as const;

export interface ScanQuery {
  flags: number;
  start: number;
  end: number;
  categoryMask?: number;
  categoryInverted?: number;
  categoryAnyof?: number;
  returnMask: number;
  /** Stop after this many pages (0 = no limit). */
  maxPages?: number;
}

/** One page_region: [start, end) with its categories (masked by returnMask). Addresses fit a double (< 2^53). */
export interface ScanRegion {
  start: number;
  end: number;
  categories: number;
}

const REGION = 24;
const ARG = 96;
const TWO32 = 2 ** 32;

/**
 * A reusable PAGEMAP_SCAN caller with its own result vector. A walk that fills the vector is
 * resumed from walk_end; one that ends early (n < vec_len) is complete. Results are read
 * through a Uint32Array view (no BigInt per region: that was 80% of a 10%-dirty scan's cost).
 */
export class PagemapScanner {
  private readonly arg = Buffer.alloc(ARG);
  private readonly vec: Buffer;
  private readonly words: Uint32Array;

  constructor(readonly capacity = 16384) {
    this.vec = Buffer.alloc(capacity * REGION);
    this.words = new Uint32Array(this.vec.buffer, this.vec.byteOffset, capacity * 6);
  }

  /**
   * Runs the query over [start, end), appending regions to `out`. On a failed ioctl the
   * regions the kernel flushed before failing are appended too (the vector is cleared first, so
   * written entries are the non-empty ones): with WP_MATCHING those pages are already
   * re-protected and would be lost otherwise. The error is rethrown after.
   */
  scan(fd: number, q: ScanQuery, out: ScanRegion[]): void {
    let start = q.start;
    for (;;) {
      this.fill(q, start);
      // The vector is all zeros here: cleared at construction, and after each call as far as it was written.
      let n: number;
      try {
        n = ioctl(fd, PAGEMAP_SCAN, this.arg);
      } catch (err) {
        this.collect(this.capacity, out, true);
        this.vec.fill(0);
        throw err;
      }
      this.collect(n, out, false);
      this.vec.fill(0, 0, n * REGION);
      if (n < this.capacity) return;
      const walkEnd = Number(this.arg.readBigUInt64LE(32));
      if (walkEnd >= q.end || walkEnd <= start) return;
      start = walkEnd;
    }
  }

  private fill(q: ScanQuery, start: number): void {
    const a = this.arg;
    a.writeBigUInt64LE(BigInt(ARG), 0);
    a.writeBigUInt64LE(BigInt(q.flags), 8);
    a.writeBigUInt64LE(BigInt(start), 16);
    a.writeBigUInt64LE(BigInt(q.end), 24);
    a.writeBigUInt64LE(0n, 32);
    a.writeBigUInt64LE(addressOf(this.vec), 40);
    a.writeBigUInt64LE(BigInt(this.capacity), 48);
    a.writeBigUInt64LE(BigInt(q.maxPages ?? 0), 56);
    a.writeBigUInt64LE(BigInt(q.categoryInverted ?? 0), 64);
    a.writeBigUInt64LE(BigInt(q.categoryMask ?? 0), 72);
    a.writeBigUInt64LE(BigInt(q.categoryAnyof ?? 0), 80);
    a.writeBigUInt64LE(BigInt(q.returnMask), 88);
  }

  private collect(n: number, out: ScanRegion[], partial: boolean): void {
    const w = this.words;
    for (let i = 0; i < n; i++) {
      const o = i * 6;
      const start = w[o]! + w[o + 1]! * TWO32;
      const end = w[o + 2]! + w[o + 3]! * TWO32;
      if (partial && end === 0) return;
      const categories = w[o + 4]!;
      // A resumed walk may report the tail of the previous region again: merge it.
      const last = out[out.length - 1];
      if (last && last.categories === categories && start <= last.end && end >= last.start) {
        if (end > last.end) last.end = end;
        continue;
      }
      out.push({ start, end, categories });
    }
  }
}

/** EPERM from a CHECK_WPASYNC scan: some mapping in the range is not registered for async write-protect. */
export const isUnregistered = (err: unknown): boolean => err instanceof SyscallError && err.errno === 1;

// --- Missing-page mode (post-copy, agent/migration/postcopy-*.ts) ---------------------------------

/** userfaultfd(2) flags for post-copy: O_CLOEXEC | O_NONBLOCK, without UFFD_USER_MODE_ONLY (the kernel's own accesses must wait for a page too, not fail with EFAULT). */
export const UFFD_MISSING_OPEN_FLAGS = 0o2000000 | 0o4000;
/** Non-cooperative events post-copy must see (fork, mremap, madvise(DONTNEED/REMOVE), munmap) and the faulting thread's id. */
export const UFFD_MISSING_FEATURES = (1n << 1n) | (1n << 2n) | (1n << 3n) | (1n << 6n) | (1n << 8n);
const UFFDIO_REGISTER_MODE_MISSING = 1n;
const UFFDIO_WAKE = 0x8010aa02;
const UFFDIO_COPY = 0xc028aa03;
const UFFDIO_ZEROPAGE = 0xc020aa04;

export const UFFD_EVENT = { PAGEFAULT: 0x12, FORK: 0x13, REMAP: 0x14, REMOVE: 0x15, UNMAP: 0x16 } as const;
export const UFFD_MSG_BYTES = 32;

/** One uffd_msg, its union read as the event says. */
export type UffdMessage =
  | { event: 'fault'; address: number; write: boolean; tid: number }
  | { event: 'fork'; fd: number }
  | { event: 'remap'; from: number; to: number; len: number }
  | { event: 'remove' | 'unmap'; start: number; end: number }
  | { event: 'unknown'; code: number };

const u64 = (b: Buffer, off: number): number => Number(b.readBigUInt64LE(off));

export function parseUffdMessage(b: Buffer, off = 0): UffdMessage {
  const code = b[off]!;
  switch (code) {
    case UFFD_EVENT.PAGEFAULT:
      return { event: 'fault', address: u64(b, off + 16), write: (b.readUInt32LE(off + 8) & 1) !== 0, tid: b.readUInt32LE(off + 24) };
    case UFFD_EVENT.FORK:
      return { event: 'fork', fd: b.readUInt32LE(off + 8) };
    case UFFD_EVENT.REMAP:
      return { event: 'remap', from: u64(b, off + 8), to: u64(b, off + 16), len: u64(b, off + 24) };
    case UFFD_EVENT.REMOVE:
    case UFFD_EVENT.UNMAP:
      return { event: code === UFFD_EVENT.REMOVE ? 'remove' : 'unmap', start: u64(b, off + 8), end: u64(b, off + 16) };
    default:
      return { event: 'unknown', code };
  }
}

/** Registers [start, start+len) for missing-page faults. */
export function uffdRegisterMissing(fd: number, start: number, len: number): void {
  const reg = Buffer.alloc(32);
  reg.writeBigUInt64LE(BigInt(start), 0);
  reg.writeBigUInt64LE(BigInt(len), 8);
  reg.writeBigUInt64LE(UFFDIO_REGISTER_MODE_MISSING, 16);
  ioctl(fd, UFFDIO_REGISTER, reg);
}

/**
 * What a fill did: copied, or found the page there already (EEXIST), or the mapping changing
 * under it (EAGAIN: read the events first), or gone (ENOENT: unmapped), or the process itself
 * gone (ESRCH: its memory is no more; it exited or exec'd).
 */
export type FillResult = 'filled' | 'exists' | 'again' | 'gone' | 'dead';

const fillErrno = (err: unknown): FillResult => {
  if (err instanceof SyscallError) {
    if (err.errno === 17) return 'exists';
    if (err.errno === 11) return 'again';
    if (err.errno === 3) return 'dead';
    if (err.errno === 2 || err.errno === 14) return 'gone';
  }
  throw err;
};

const copyArg = Buffer.alloc(40);
/** UFFDIO_COPY of whole pages from our buffer into the registered range; wakes the threads waiting on it. */
export function uffdCopy(fd: number, dst: number, src: Buffer): FillResult {
  copyArg.writeBigUInt64LE(BigInt(dst), 0);
  copyArg.writeBigUInt64LE(addressOf(src), 8);
  copyArg.writeBigUInt64LE(BigInt(src.length), 16);
  copyArg.writeBigUInt64LE(0n, 24);
  copyArg.writeBigInt64LE(0n, 32);
  try {
    ioctl(fd, UFFDIO_COPY, copyArg);
    return 'filled';
  } catch (err) {
    return fillErrno(err);
  }
}

const zeroArg = Buffer.alloc(32);
/** UFFDIO_ZEROPAGE: the range reads as zeros (it held none at the source). */
export function uffdZero(fd: number, start: number, len: number): FillResult {
  zeroArg.writeBigUInt64LE(BigInt(start), 0);
  zeroArg.writeBigUInt64LE(BigInt(len), 8);
  zeroArg.writeBigUInt64LE(0n, 16);
  zeroArg.writeBigInt64LE(0n, 24);
  try {
    ioctl(fd, UFFDIO_ZEROPAGE, zeroArg);
    return 'filled';
  } catch (err) {
    return fillErrno(err);
  }
}

/** Wakes threads waiting on a range that is present already. */
export function uffdWake(fd: number, start: number, len: number): void {
  const r = Buffer.alloc(16);
  r.writeBigUInt64LE(BigInt(start), 0);
  r.writeBigUInt64LE(BigInt(len), 8);
  ioctl(fd, UFFDIO_WAKE, r);
}
