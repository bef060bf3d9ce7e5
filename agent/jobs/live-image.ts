// A running workload's memory kept on shared storage between its checkpoints (docs/hpc.md):
// the engine's dirty tracker stays on the tree, and each round appends only the pages written
// since the previous one to an append-only pages store beside the snapshots. A checkpoint runs
// rounds while the workload runs, then freezes it for the last delta only, as a live migration
// does; its image refers to the store for every page it holds.
import { freemem } from 'node:os';
import { crc32 } from 'node:zlib';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type PageRun, toHex } from '../../shared/image-format.ts';
import type { Checkpoint, StoreTarget } from '../engine/checkpoint.ts';
import type { MethodRequest } from '../engine/memory/dirty/choose.ts';
import { readPages } from '../engine/memory/dirty/read.ts';
import { type TreeTracker, trackTree } from '../engine/memory/dirty/tree.ts';
import { PAGE, type Span, type TrackedRange } from '../engine/memory/dirty/types.ts';
import { MAX_RUN_PAGES } from '../engine/memory/memory.ts';
import { PageIndex, type StoredRun } from '../engine/memory/page-index.ts';
import { PageStore } from '../engine/memory/page-store.ts';
import { O, closeFd, openFile } from '../ffi/syscalls.ts';

export interface RoundFigures {
  /** Pages the round wrote to the store, and pages it found zeroed. */
  pagesWritten: number;
  pagesZero: number;
  ms: number;
}

export class LiveImage {
  readonly #index = new Map<number, PageIndex>();
  /** The tracked ranges of the last round, per process: the mappings whose pages the index holds. */
  #tracked = new Map<number, TrackedRange[]>();
  readonly #buf = Buffer.allocUnsafe(MAX_RUN_PAGES * PAGE);
  /** Pages copied out during the freeze, written to the store after it (their runs' checksums then). */
  #deferred: { pid: number; run: StoredRun; data: Buffer }[] = [];
  #deferredBytes = 0;
  /** Chunks touched before the freeze for it to copy into (a fresh page's first touch costs more than the copy). */
  #pool: Buffer[] = [];
  /** Bytes the last freeze copied: what the next one is expected to. */
  #lastDelta = 0;
  /** The chunk the freeze is filling, and how far: small runs share one. */
  #chunk: { buf: Buffer; used: number } | null = null;
  #stopped = false;
  /** Checkpoints published from this store so far. */
  checkpoints = 0;
  /**
   * Whether rounds while the workload runs shrink what the freeze must carry: false when a second
   * round found about as much written as the first (the workload writes faster than the store
   * takes it), so later checkpoints go straight to the freeze; retried every RETRY_ROUNDS-th.
   */
  converging = true;
  skippedRounds = 0;

  private constructor(
    readonly root: number,
    readonly images: string,
    private readonly tracker: TreeTracker,
    public store: PageStore,
  ) {}

  /**
   * Moves the pages the image needs into a new store, the tracker kept (no page is read from
   * the workload again): the old store, mostly pages written over since, goes once a snapshot
   * refers to the new one. A failure leaves this image on the old store.
   */
  rebase(next: PageStore): void {
    const moved = new Map<number, StoredRun[]>();
    for (const [pid, idx] of this.#index) {
      const runs: StoredRun[] = [];
      for (const r of idx.runs) {
        // Long runs in pieces: the buffer holds MAX_RUN_PAGES.
        for (let done = 0; done < r.pages; done += MAX_RUN_PAGES) {
          const pages = Math.min(MAX_RUN_PAGES, r.pages - done);
          const data = this.store.read(pid, { addr: r.addr + done * PAGE, pages, offset: r.offset + done * PAGE, crc32: -1 }, this.#buf);
          runs.push(next.append(pid, r.addr + done * PAGE, data));
        }
      }
      moved.set(pid, runs);
    }
    for (const [pid, runs] of moved) this.#index.get(pid)!.replace(runs);
    this.store.close();
    this.store = next;
  }

  /** Starts tracking the tree now; the first round writes every page that holds data. */
  static start(root: number, images: string, store: PageStore, method: MethodRequest = 'auto'): LiveImage {
    return new LiveImage(root, images, trackTree(root, { method }), store);
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Bytes the current image's pages take in the store (superseded pages aside). */
  get liveBytes(): number {
    return [...this.#index.values()].reduce((a, i) => a + i.bytes, 0);
  }

  /**
   * One round: the pages written since the last one go to the store. Frozen trees: `allowInject`
   * false. `deferUpTo`: copy up to that many bytes into memory instead, for writeDeferred() to
   * write: the page cache's writeback can slow a write to disk speed, which must not be in a freeze.
   */
  async round(opts: { allowInject?: boolean; deferUpTo?: number } = {}): Promise<RoundFigures> {
    if (this.#stopped) throw new FerryError(ErrorCode.Unavailable, `dirty tracking of pid ${this.root} has ended`);
    const t0 = performance.now();
    const scan = await this.tracker.round({ allowInject: opts.allowInject ?? true });
    const deferUpTo = opts.deferUpTo ?? 0;
    for (const pid of scan.exited) {
      this.#index.delete(pid);
      this.#tracked.delete(pid);
    }
    let pagesWritten = 0;
    for (const p of scan.processes) {
      const written: StoredRun[] = [];
      const cleared: Span[] = [];
      let mem = -1;
      try {
        // /proc/PID/mem: no pin, so pages shared copy-on-write with a parent or child stay shared.
        mem = openFile(`/proc/${p.pid}/mem`, O.RDONLY | O.CLOEXEC);
      } catch {
        // gone: every read below comes back empty and clears its pages
      }
      try {
        for (const r of p.runs) {
          if (r.zero) {
            cleared.push({ start: r.addr, end: r.addr + r.pages * PAGE });
            continue;
          }
          for (let done = 0; done < r.pages; done += MAX_RUN_PAGES) {
            const pages = Math.min(MAX_RUN_PAGES, r.pages - done);
            const addr = r.addr + done * PAGE;
            const defer = this.#deferredBytes + pages * PAGE <= deferUpTo;
            const view = defer ? this.#deferSpace(pages * PAGE) : this.#buf.subarray(0, pages * PAGE);
            const ok = mem >= 0 ? readPages(p.pid, [{ start: addr, end: addr + pages * PAGE }], view, mem) : new Uint8Array(pages);
            for (let a = 0; a < pages; ) {
              let b = a;
              while (b < pages && ok[b] === ok[a]) b++;
              const at = addr + a * PAGE;
              if (ok[a]) {
                const data = view.subarray(a * PAGE, b * PAGE);
                if (defer) {
                  const run = { addr: at, pages: b - a, offset: this.store.reserve(p.pid, data.length), crc32: -1 };
                  this.#deferred.push({ pid: p.pid, run, data });
                  this.#deferredBytes += data.length;
                  written.push(run);
                } else written.push(this.store.append(p.pid, at, data));
                this.tracker.noteSent(p.pid, at, data);
                pagesWritten += b - a;
              } else {
                // Unmapped meanwhile: nothing to keep (a mapping made there later is reported whole).
                cleared.push({ start: at, end: addr + b * PAGE });
              }
              a = b;
            }
          }
        }
      } finally {
        if (mem >= 0) closeFd(mem);
      }
      let idx = this.#index.get(p.pid);
      if (!idx) this.#index.set(p.pid, (idx = new PageIndex()));
      idx.apply(written, cleared, p.ranges);
      this.#tracked.set(p.pid, p.ranges);
    }
    return { pagesWritten, pagesZero: scan.zeroPages, ms: performance.now() - t0 };
  }

  /**
   * With the tree frozen and collected: the last delta goes to the store, then every mapping's
   * pages are set in the checkpoint's processes (from the store, or dumped now for mappings not
   * tracked). Checksums of runs cut from longer ones are filled in by `finish()`, after the thaw.
   */
  async final(c: Checkpoint, snapshotDir: string): Promise<RoundFigures & { finish: () => void }> {
    const figures = await this.round({ allowInject: false, deferUpTo: deferLimit() });
    this.#lastDelta = this.#deferredBytes;
    this.#pool = [];
    this.#chunk = null;
    const pending: { pid: number; run: PageRun; stored: StoredRun }[] = [];
    const target: StoreTarget = {
      pagesFile: (pid) => this.store.pagesFile(pid),
      writer: (pid) => this.store.writer(pid),
      grew: (pid, size) => this.store.grew(pid, size),
      carried: (pid, start, end) => {
        const idx = this.#index.get(pid);
        const inside = (this.#tracked.get(pid) ?? []).some((r) => r.start <= start && end <= r.end);
        if (!idx || !inside) return null;
        return idx.within(start, end).map((stored) => {
          const run = { addr: toHex(BigInt(stored.addr)), pages: stored.pages, offset: stored.offset, crc32: stored.crc32 };
          if (stored.crc32 < 0) pending.push({ pid, run, stored });
          return run;
        });
      },
    };
    c.dumpMemory(snapshotDir, undefined, { store: target });
    const finish = () => {
      this.#writeDeferred();
      for (const [pid, idx] of this.#index) idx.resolve((r) => this.store.crcOf(pid, r));
      for (const p of pending) p.run.crc32 = p.stored.crc32 >= 0 ? p.stored.crc32 : this.store.crcOf(p.pid, p.stored);
    };
    return { ...figures, finish };
  }

  /**
   * While the workload runs: memory for the next freeze to copy the last delta into, as much as
   * the last freeze copied (or `expect`), with room to spare; touched now, so that no fresh page
   * is faulted in during the freeze.
   */
  prepareFreeze(expect: number): void {
    const want = Math.min(deferLimit(), Math.ceil(Math.max(this.#lastDelta, expect) * 1.25) + (8 << 20));
    const chunk = MAX_RUN_PAGES * PAGE;
    while (this.#pool.length * chunk < want) this.#pool.push(Buffer.alloc(chunk).fill(1));
  }

  /** Room for `bytes` (at most one chunk) in memory the freeze keeps until writeDeferred(). */
  #deferSpace(bytes: number): Buffer {
    const size = MAX_RUN_PAGES * PAGE;
    if (!this.#chunk || this.#chunk.used + bytes > size) this.#chunk = { buf: this.#pool.pop() ?? Buffer.allocUnsafeSlow(size), used: 0 };
    const at = this.#chunk.used;
    this.#chunk.used += bytes;
    return this.#chunk.buf.subarray(at, at + bytes);
  }

  #writeDeferred(): void {
    const pending = this.#deferred;
    this.#deferred = [];
    this.#deferredBytes = 0;
    for (const d of pending) {
      this.store.writeAt(d.pid, d.run.offset, d.data);
      d.run.crc32 = crc32(d.data);
    }
  }

  /** Tracking ends (the workload runs at full speed); the store stays for the images that use it. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#deferred = [];
    this.#pool = [];
    this.#chunk = null;
    try {
      this.tracker.stop();
    } catch {
      // the workload is gone already
    }
    this.store.close();
  }
}

/** How much of a freeze's last delta may wait in memory: a quarter of the free memory, at most 4 GiB. */
const deferLimit = (): number => Math.min(4 * 2 ** 30, Math.floor(freemem() / 4));
