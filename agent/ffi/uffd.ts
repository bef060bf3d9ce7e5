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
