// The source's post-copy (docs/postcopy.md): the workload runs on the destination and the frozen
// tree here holds the only copy of the pages it still lacks. Two jobs until the destination says
// every page arrived: answer each fault on the faults channel at once (the page asked for and
// what follows it in its run), and push everything else over the migration's stream, the pages
// the workload wrote in the last two rounds first (the likeliest to be touched again soon).
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { PostcopyFigures } from '../../shared/migration.ts';
import { type DirtyRound, type DirtyRun, PAGE, type ProcessDirty, type Span } from '../engine/memory/dirty/types.ts';
import { readPages } from '../engine/memory/dirty/read.ts';
import { PageSender, type SentSoFar } from '../transfer/pages.ts';
import type { DataConnection } from '../transfer/stream.ts';

/** The pages of one source process the destination lacks, the hot ones (to push first) apart. */
export interface OutstandingProcess {
  pid: number;
  hot: DirtyRun[];
  cold: DirtyRun[];
}

/** Pages a push round carries before it looks again at what faults fetched meanwhile. */
const PUSH_CHUNK_PAGES = 8192;

export class PostcopySource {
  /** `pid:page` of the pages a fault already fetched: the push skips them. */
  readonly #fetched = new Set<string>();
  readonly #runs = new Map<number, DirtyRun[]>();
  #stopped = false;
  #bytesPushed = 0;
  #resumed!: () => void;
  /** Settles when the destination says the workload runs there (the push waits for it). */
  readonly #running = new Promise<void>((resolve) => (this.#resumed = resolve));
  pagesPushed = 0;
  pagesFetched = 0;

  constructor(
    private readonly push: DataConnection,
    private readonly faults: DataConnection,
    private readonly outstanding: readonly OutstandingProcess[],
    /** Where to report how far it got: (pages, bytes) in all, fetched and pushed (none: not reported). */
    private readonly progress: ((sofar: SentSoFar) => void) | null = null,
  ) {
    for (const p of outstanding) this.#runs.set(p.pid, [...p.hot, ...p.cold].sort((a, b) => a.addr - b.addr));
  }

  /** Each process's outstanding pages as spans, sorted (the order of the `postcopy` frame and of the backup). */
  get outstandingSpans(): Map<number, Span[]> {
    return new Map([...this.#runs].map(([pid, runs]) => [pid, runs.map((r) => ({ start: r.addr, end: r.addr + r.pages * PAGE }))]));
  }

  /** Serves faults and pushes until the destination reports every page in place; its figures. */
  async run(): Promise<PostcopyFigures> {
    const serving = this.#serveFaults();
    serving.catch(() => undefined);
    // A channel that ends before the destination resumed ends the wait too (the push then fails).
    await Promise.race([this.#running, serving.catch(() => undefined)]);
    await this.#pushAll();
    const f = await Promise.race([this.#doneFrame(), serving.then(() => Promise.reject(new FerryError(ErrorCode.Unavailable, 'post-copy: the faults channel ended first')))]);
    this.stop();
    return f;
  }

  async #doneFrame(): Promise<PostcopyFigures> {
    const f = await this.push.next();
    if (!f) throw new FerryError(ErrorCode.Unavailable, 'post-copy: the destination closed the stream before every page arrived');
    if (f.header.t === 'error') throw new FerryError(ErrorCode.Unavailable, `post-copy: the destination failed: ${f.header.message}`);
    if (f.header.t !== 'postcopy-done') throw new FerryError(ErrorCode.BadMessage, `post-copy: expected "postcopy-done", got "${f.header.t}"`);
    return f.header.figures;
  }

  async #serveFaults(): Promise<void> {
    for (;;) {
      const f = await this.faults.next();
      if (!f || this.#stopped) return;
      if (f.header.t === 'postcopy-resumed') {
        this.#resumed();
        continue;
      }
      if (f.header.t !== 'fault') throw new FerryError(ErrorCode.BadMessage, `post-copy faults channel: unexpected "${f.header.t}"`);
      const { pid } = f.header;
      const addr = parseInt(f.header.addr, 16);
      const run = this.#runOf(pid, addr);
      // Only the pages this migration left for after the resume: never another process's memory, nor other pages of this one.
      if (!run || addr % PAGE !== 0) throw new FerryError(ErrorCode.BadMessage, `post-copy: the destination asked for page ${addr.toString(16)} of process ${pid}, which is not one it lacks`);
      const pages = Math.min(f.header.pages, (run.addr + run.pages * PAGE - addr) / PAGE);
      const data = Buffer.alloc(pages * PAGE);
      const ok = readPages(pid, [{ start: addr, end: addr + pages * PAGE }], data, -1);
      if (!ok[0]) throw new FerryError(ErrorCode.Internal, `post-copy: page ${addr.toString(16)} of process ${pid} cannot be read at the source`);
      let n = 1;
      while (n < pages && ok[n]) n++;
      for (let i = 0; i < n; i++) this.#fetched.add(`${pid}:${addr + i * PAGE}`);
      this.pagesFetched += n;
      await this.faults.send({ t: 'fault-pages', pid, addr: f.header.addr, pages: n }, data.subarray(0, n * PAGE));
    }
  }

  #runOf(pid: number, addr: number): DirtyRun | undefined {
    const runs = this.#runs.get(pid) ?? [];
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = runs[mid]!;
      if (addr < r.addr) hi = mid - 1;
      else if (addr >= r.addr + r.pages * PAGE) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /** Every outstanding page in rounds of at most PUSH_CHUNK_PAGES, hot ones first, skipping what faults fetched. */
  async #pushAll(): Promise<void> {
    const sender = new PageSender(this.push);
    const queue: { pid: number; run: DirtyRun }[] = [
      ...this.outstanding.flatMap((p) => p.hot.map((run) => ({ pid: p.pid, run }))),
      ...this.outstanding.flatMap((p) => p.cold.map((run) => ({ pid: p.pid, run }))),
    ];
    let round = 0;
    while (queue.length > 0 && !this.#stopped) {
      const byPid = new Map<number, DirtyRun[]>();
      let pages = 0;
      while (queue.length > 0 && pages < PUSH_CHUNK_PAGES) {
        const { pid, run } = queue[0]!;
        const take = Math.min(run.pages, PUSH_CHUNK_PAGES - pages);
        const part = { addr: run.addr, pages: take, zero: false };
        if (take === run.pages) queue.shift();
        else queue[0] = { pid, run: { addr: run.addr + take * PAGE, pages: run.pages - take, zero: false } };
        pages += take;
        for (const r of this.#unfetched(pid, part)) (byPid.get(pid) ?? byPid.set(pid, []).get(pid)!).push(r);
      }
      const processes: ProcessDirty[] = [...byPid].map(([pid, runs]) => ({ pid, method: 'uffd-wp', ranges: [], runs: runs.sort((a, b) => a.addr - b.addr), pagesScanned: 0 }));
      if (processes.length === 0) continue;
      const r: DirtyRound = { round: ++round, processes, exited: [], pagesScanned: 0, pagesDirty: pages, zeroPages: 0, scanMs: 0 };
      const base = { pages: this.pagesPushed, bytesRaw: this.#bytesPushed, bytesOnWire: this.push.bytesSent };
      const st = await sender.sendRound(r, undefined, undefined, (sofar) =>
        this.progress?.({ pages: base.pages + sofar.pages + this.pagesFetched, bytesRaw: base.bytesRaw + sofar.bytesRaw + this.pagesFetched * PAGE, bytesOnWire: this.push.bytesSent + this.faults.bytesSent }),
      );
      this.pagesPushed += st.pagesSent + st.zeroPages;
      this.#bytesPushed += st.bytesRaw;
    }
    await sender.finish();
  }

  /** The parts of a run no fault has fetched yet. */
  #unfetched(pid: number, run: DirtyRun): DirtyRun[] {
    const out: DirtyRun[] = [];
    for (let i = 0, a = run.addr; i < run.pages; i++, a += PAGE) {
      if (this.#fetched.has(`${pid}:${a}`)) continue;
      const last = out.at(-1);
      if (last && last.addr + last.pages * PAGE === a) last.pages++;
      else out.push({ addr: a, pages: 1, zero: false });
    }
    return out;
  }

  /** Ends both channels (post-copy over, or given up). Never throws. */
  stop(): void {
    this.#stopped = true;
    this.push.destroy();
    this.faults.destroy();
  }
}
