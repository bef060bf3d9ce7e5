// Where received pages go: straight into a process (the husk on the destination, through
// process_vm_writev), or into a shadow copy kept in memory (tests, verification).
import { O, closeFd, openFile, vmWriteSpans } from '../ffi/syscalls.ts';
import { PAGE, type Span } from '../engine/memory/dirty/types.ts';
import { readPages } from '../engine/memory/dirty/read.ts';
import { selectPages } from '../engine/memory/memory.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';

export interface PageSink {
  /** Whole pages of the sender's process `pid`, starting at addr. */
  write(pid: number, addr: number, data: Buffer): void;
  /**
   * Several runs of one frame at once (`data` holds them back to back): a sink that can write
   * them in one call says so by having this; else each goes through write().
   */
  writeRuns?(pid: number, runs: readonly Span[], data: Buffer): void;
  /** Pages that read as zeros now. */
  zero(pid: number, addr: number, pages: number): void;
  /** The process exited on the sender's side. */
  drop?(pid: number): void;
  /**
   * The process is to exist from here on, made from its parent as it stands (before its own
   * pages); it inherits `inherit` from the parent (pages they share copy-on-write).
   */
  born?(pid: number, inherit: readonly Span[]): void;
}

const ZERO_PAGE = Buffer.alloc(PAGE);

/** A sparse copy of each process's memory: page number -> 4 KiB; absent pages are zero. */
export class ShadowSink implements PageSink {
  private readonly procs = new Map<number, Map<number, Buffer>>();

  private pagesOf(pid: number): Map<number, Buffer> {
    let m = this.procs.get(pid);
    if (!m) this.procs.set(pid, (m = new Map()));
    return m;
  }

  write(pid: number, addr: number, data: Buffer): void {
    const m = this.pagesOf(pid);
    for (let off = 0; off < data.length; off += PAGE) {
      const key = (addr + off) / PAGE;
      const dst = m.get(key) ?? Buffer.allocUnsafeSlow(PAGE);
      data.copy(dst, 0, off, off + PAGE);
      m.set(key, dst);
    }
  }

  zero(pid: number, addr: number, pages: number): void {
    const m = this.pagesOf(pid);
    for (let i = 0; i < pages; i++) m.delete(addr / PAGE + i);
  }

  drop(pid: number): void {
    this.procs.delete(pid);
  }

  /** The shadow's copy of one page (zeros when never written). */
  page(pid: number, addr: number): Buffer {
    return this.procs.get(pid)?.get(addr / PAGE) ?? ZERO_PAGE;
  }

  /** Bytes held (non-zero pages). */
  get bytes(): number {
    let n = 0;
    for (const m of this.procs.values()) n += m.size * PAGE;
    return n;
  }

  /**
   * Page addresses in `ranges` where the live process differs from the shadow (a page the
   * process cannot read counts as a difference). The process should be stopped.
   */
  mismatches(pid: number, ranges: readonly Span[]): number[] {
    const out: number[] = [];
    const chunk = 4 << 20;
    const buf = Buffer.alloc(chunk);
    for (const r of ranges) {
      for (let a = r.start; a < r.end; a += chunk) {
        const end = Math.min(r.end, a + chunk);
        const ok = readPages(pid, [{ start: a, end }], buf);
        for (let i = 0; i < ok.length; i++) {
          const addr = a + i * PAGE;
          if (!ok[i] || !buf.subarray(i * PAGE, (i + 1) * PAGE).equals(this.page(pid, addr))) out.push(addr);
        }
      }
    }
    return out;
  }
}

/**
 * Writes into a live process (pid on the sender mapped to a local pid). Zero runs only touch the
 * pages that hold data there: pages with none read as zeros already (the destination's mapping
 * is anonymous where the source's was), and writing zeros would allocate them.
 */
export class ProcessSink implements PageSink {
  private readonly pagemaps = new Map<number, number>();
  private scratch = Buffer.alloc(0);
  bytesWritten = 0;
  /** Pages that could not be written (tolerant sinks only). */
  pagesSkipped = 0;

  /**
   * `target`: the local pid for a sender's pid, or 0 to skip that process's pages. `tolerant`:
   * pages that land outside the process's mappings are skipped instead of failing (a live
   * migration's layout is read a moment after the scan; the final round's is exact).
   */
  constructor(
    private readonly target: (pid: number) => number = (pid) => pid,
    private readonly tolerant = false,
    /** Called after each write with the local pid (verification reads the pages back). */
    private readonly landed?: (pid: number, dst: number, addr: number, data: Buffer) => void,
    /** Called after a batch of runs was written (as `landed`, for many runs at once). */
    private readonly landedRuns?: (pid: number, dst: number, runs: readonly Span[], data: Buffer) => void,
  ) {}

  /**
   * One process_vm_writev for a frame's runs (a sparse round's frame holds hundreds of one-page
   * runs: a call each cost ten times more). A tolerant sink whose batch stopped short at a page
   * that is not mapped there writes the rest run by run, skipping such pages.
   */
  writeRuns(pid: number, runs: readonly Span[], data: Buffer): void {
    const dst = this.target(pid);
    if (dst <= 0) return;
    let n = 0;
    try {
      n = vmWriteSpans(dst, runs.map((r) => ({ addr: r.start, len: r.end - r.start })), data);
    } catch (err) {
      if (!this.tolerant) throw err;
    }
    if (n === data.length) {
      this.#landedBatch(pid, dst, runs, data);
      return;
    }
    if (!this.tolerant) throw new FerryError(ErrorCode.Syscall, `process_vm_writev into ${dst}: ${n} of ${data.length} bytes`, { details: { pid: dst } });
    // Runs wholly written stay written (and are checked); from the one that stopped, run by run.
    const whole: Span[] = [];
    for (const [r, off] of offsets(runs)) {
      const len = r.end - r.start;
      if (off + len <= n) {
        whole.push(r);
        continue;
      }
      this.write(pid, r.start, data.subarray(off, off + len));
    }
    if (whole.length > 0) this.#landedBatch(pid, dst, whole, data.subarray(0, whole.reduce((a, r) => a + r.end - r.start, 0)));
  }

  /** Runs written whole, back to back in `data`: counted, then checked (in one call where the check allows). */
  #landedBatch(pid: number, dst: number, runs: readonly Span[], data: Buffer): void {
    this.bytesWritten += data.length;
    if (this.landedRuns) this.landedRuns(pid, dst, runs, data);
    else if (this.landed) for (const [r, off] of offsets(runs)) this.landed(pid, dst, r.start, data.subarray(off, off + r.end - r.start));
  }

  write(pid: number, addr: number, data: Buffer): void {
    const dst = this.target(pid);
    if (dst <= 0) return;
    const n = this.tolerant ? this.writeSome(dst, addr, data) : vmWriteSpans(dst, [{ addr, len: data.length }], data);
    if (n !== data.length && !this.tolerant) throw new FerryError(ErrorCode.Syscall, `process_vm_writev into ${dst} at 0x${addr.toString(16)}: ${n} of ${data.length} bytes`, { details: { pid: dst, addr } });
    this.bytesWritten += n;
    this.landed?.(pid, dst, addr, data);
  }

  /** Writes what it can, page by page past a failure; returns the bytes written. */
  private writeSome(dst: number, addr: number, data: Buffer): number {
    let done = 0;
    for (let off = 0; off < data.length; ) {
      let n = 0;
      try {
        n = vmWriteSpans(dst, [{ addr: addr + off, len: data.length - off }], data.subarray(off));
      } catch {
        n = 0;
      }
      done += n;
      off += n;
      if (off < data.length) {
        // The page at `off` is not mapped there: skip it.
        off += PAGE - (off % PAGE);
        this.pagesSkipped++;
      }
    }
    return done;
  }

  zero(pid: number, addr: number, pages: number): void {
    const dst = this.target(pid);
    if (dst <= 0) return;
    let pm = this.pagemaps.get(dst);
    if (pm === undefined) this.pagemaps.set(dst, (pm = openFile(`/proc/${dst}/pagemap`, O.RDONLY | O.CLOEXEC)));
    for (const r of selectPages(pm, BigInt(addr), BigInt(addr + pages * PAGE), false)) {
      const start = Number(r.addr);
      const len = r.pages * PAGE;
      if (this.scratch.length < len) this.scratch = Buffer.alloc(len);
      const view = this.scratch.subarray(0, len);
      const ok = readPages(dst, [{ start, end: start + len }], view);
      for (let i = 0; i < r.pages; i++) {
        if (!ok[i] || view.subarray(i * PAGE, (i + 1) * PAGE).equals(ZERO_PAGE)) continue;
        vmWriteSpans(dst, [{ addr: start + i * PAGE, len: PAGE }], ZERO_PAGE);
        this.bytesWritten += PAGE;
      }
    }
  }

  drop(pid: number): void {
    const pm = this.pagemaps.get(this.target(pid));
    if (pm !== undefined) closeFd(pm);
    this.pagemaps.delete(this.target(pid));
  }

  close(): void {
    for (const pm of this.pagemaps.values()) closeFd(pm);
    this.pagemaps.clear();
  }
}

/** Each run with its offset in the bytes that hold the runs back to back. */
function* offsets(runs: readonly Span[]): Generator<[Span, number]> {
  let off = 0;
  for (const r of runs) {
    yield [r, off];
    off += r.end - r.start;
  }
}
