// A running workload's memory kept on shared storage between its checkpoints (docs/hpc.md):
// the engine's dirty tracker stays on the tree, and each round appends only the pages written
// since the previous one to an append-only pages store beside the snapshots. A checkpoint runs
// rounds while the workload runs, then freezes it for the last delta only, as a live migration
// does; its image refers to the store for every page it holds.
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
  #stopped = false;
  /** Checkpoints published from this store so far. */
  checkpoints = 0;

  private constructor(
    readonly root: number,
    readonly images: string,
    private readonly tracker: TreeTracker,
    readonly store: PageStore,
  ) {}

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

  /** One round: the pages written since the last one go to the store. Frozen trees: `allowInject` false. */
  async round(opts: { allowInject?: boolean } = {}): Promise<RoundFigures> {
    if (this.#stopped) throw new FerryError(ErrorCode.Unavailable, `dirty tracking of pid ${this.root} has ended`);
    const t0 = performance.now();
    const scan = await this.tracker.round(opts);
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
            const view = this.#buf.subarray(0, pages * PAGE);
            const ok = mem >= 0 ? readPages(p.pid, [{ start: addr, end: addr + pages * PAGE }], view, mem) : new Uint8Array(pages);
            for (let a = 0; a < pages; ) {
              let b = a;
              while (b < pages && ok[b] === ok[a]) b++;
              const at = addr + a * PAGE;
              if (ok[a]) {
                const data = view.subarray(a * PAGE, b * PAGE);
                written.push(this.store.append(p.pid, at, data));
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
    const figures = await this.round({ allowInject: false });
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
      for (const [pid, idx] of this.#index) idx.resolve((r) => this.store.crcOf(pid, r));
      for (const p of pending) p.run.crc32 = p.stored.crc32 >= 0 ? p.stored.crc32 : this.store.crcOf(p.pid, p.stored);
    };
    return { ...figures, finish };
  }

  /** Tracking ends (the workload runs at full speed); the store stays for the images that use it. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.tracker.stop();
    } catch {
      // the workload is gone already
    }
    this.store.close();
  }
}
