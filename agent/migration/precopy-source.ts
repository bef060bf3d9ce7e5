// The source's side of a live migration (docs/precopy.md): one session per migration, holding
// the data stream to the destination, the tree's dirty tracker and its page sender from round 1
// to the final delta. Each round scans what the tree wrote, sends the tree's layout when it
// changed (the destination builds and reshapes its husks from it) and then the pages. The final
// step, with the tree frozen, sends the last delta and the image without the pages that already
// went (only what the destination lacks), then a done marker, over the same stream.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { Image } from '../../shared/image-format.ts';
import type { NetnsConfig } from '../../shared/netns.ts';
import type { RoundStatsWire } from '../../shared/migration.ts';
import type { LayoutProcess, LayoutVma, PrecopyLayout } from '../../shared/precopy.ts';
import type { Checkpoint } from '../engine/checkpoint.ts';
import { vmaKind } from '../engine/collect.ts';
import { type MethodRequest } from '../engine/memory/dirty/choose.ts';
import { type TreeTracker, trackTree } from '../engine/memory/dirty/tree.ts';
import { type DirtyRound, type DirtyRun, PAGE, type Span, type TrackedRange } from '../engine/memory/dirty/types.ts';
import { ENTRY, writeEntries } from '../transfer/page-table.ts';
import { PostcopySource } from './postcopy-source.ts';
import { splitForPostcopy } from './postcopy-split.ts';
import { prepareImageDir, writeImage } from '../engine/image/image-io.ts';
import { containerClocks, isContainer, nsIds } from '../engine/namespaces/namespaces.ts';
import { treeOf } from '../engine/preflight.ts';
import { isGone, listTasks, readMaps, readStat } from '../engine/process/procfs.ts';
import { type DataConnection, type StreamAuth, type StreamEndpoint, connectStream } from '../transfer/stream.ts';
import { RoundProgress, type ProgressSink } from './progress.ts';
import { PageSender, type PageRoundStats } from '../transfer/pages.ts';
import { fromHex, toHex } from '../../shared/image-format.ts';
import { sendImageDir } from './image-transfer.ts';
import { ForkCarry } from './precopy-cow.ts';
import { type FixedCosts, costModel, type TreeSize } from './precopy-costs.ts';
import { type ThrottleRecord, applyThrottle, planThrottle, throttleCpus, unthrottle } from './throttle.ts';

/** What a round reports (shared/migration.ts RoundStatsWire), with the source's own figures always there. */
export type RoundReport = RoundStatsWire & { pagesZero: number; remainingPages: number; fixedCosts: FixedCosts; tracker: string };

export interface SessionOptions {
  /** Whom the stream goes to and how it is authenticated (the migration, the destination, our identity). */
  stream: StreamAuth;
  endpoint: StreamEndpoint;
  method: MethodRequest;
  /** The workload's network namespace configuration (null: it shares its host's). */
  netConfig: NetnsConfig | null;
  /** Dumps the namespace's configuration again (every round after the first). */
  dumpNetns?: () => Promise<NetnsConfig | null>;
  /** The workload's cgroup v2 directory (throttling). */
  cgroupDir: string | null;
  /** Persists the throttle record before it takes effect (a restarted agent must undo it). */
  onThrottle: (rec: ThrottleRecord | null) => void;
  /** Where each round's progress is reported while its pages go (none: not reported). */
  progress?: ProgressSink | null;
  /** The migration may switch over to post-copy: its faults channel opens with the stream. */
  postcopy?: boolean;
}

/** Bytes the page stream must have carried before its speed counts as the link's (fewer measure round trips). */
const LINK_MEASURE_BYTES = 8 << 20;

/** A mapping as the layout carries it. */
const layoutVma = (v: { start: string; end: string; perms: string; kind: LayoutVma['kind']; path?: string; fileOffset: string }): LayoutVma => ({
  start: v.start,
  end: v.end,
  perms: v.perms,
  kind: v.kind,
  ...(v.path !== undefined ? { path: v.path } : {}),
  fileOffset: v.fileOffset,
});

export class PrecopySource {
  #tracker: TreeTracker | null = null;
  #sender: PageSender;
  /** Which processes the destination has, and the pages their children inherit there instead. */
  readonly #forks = new ForkCarry();
  #lastLayout = '';
  #lastScanAt = 0;
  #container: boolean;
  #containerInfo: PrecopyLayout['container'] = null;
  #trackerStartMs = 0;
  /** Bytes and busy time of the page stream over all rounds: the bandwidth estimate. */
  #wire = { bytes: 0, ms: 0 };
  #throttle: ThrottleRecord | null = null;
  #stopped = false;
  /** Post-copy's faults channel (opened at round 1 when the migration may switch over to post-copy). */
  #faults: DataConnection | null = null;
  /** Each process's runs of the last round: the pages a post-copy pushes first. */
  #lastRuns = new Map<number, DirtyRun[]>();
  #residentPages = 0;
  #netConfig: NetnsConfig | null;
  /** CPU time the tree used (clock ticks) at the last sample, and the CPUs it used since the one before. */
  #cpuUse = { ticks: 0, at: 0, cpus: 0 };
  readonly reports: RoundReport[] = [];

  private constructor(
    readonly root: number,
    private readonly conn: DataConnection,
    private readonly opts: SessionOptions,
  ) {
    this.#sender = new PageSender(conn);
    this.#container = isContainer(root, treeOf(root));
    this.#netConfig = opts.netConfig;
  }

  /** Round 1: connects to the destination and starts tracking the tree. */
  static async open(root: number, opts: SessionOptions): Promise<PrecopySource> {
    const conn = await connectStream(opts.endpoint, opts.stream);
    let s: PrecopySource;
    let faults: DataConnection | null = null;
    try {
      s = new PrecopySource(root, conn, opts);
      // Not paced: a demand page is what the workload waits for, and it carries little.
      const { rateBps: _paced, ...unpaced } = opts.stream;
      if (opts.postcopy) s.#faults = faults = await connectStream(opts.endpoint, { ...unpaced, channel: 'faults' });
      // Tells the destination this stream is a pre-copy session, not a one-shot image.
      await conn.send({ t: 'session', kind: 'precopy' });
      const t = performance.now();
      s.#tracker = trackTree(root, { method: opts.method });
      s.#trackerStartMs = performance.now() - t;
    } catch (err) {
      conn.destroy();
      faults?.destroy();
      throw err;
    }
    return s;
  }

  /** The workload's network namespace configuration as the last round dumped it (null: none of its own). */
  get netConfig(): NetnsConfig | null {
    return this.#netConfig;
  }

  get throttleRecord(): ThrottleRecord | null {
    return this.#throttle;
  }

  /** The tree's pages that held data at round 1 (its resident memory then, not the size of its mappings). */
  get residentBytes(): number {
    return this.#residentPages * PAGE;
  }

  #size(): TreeSize {
    const pids = treeOf(this.root).filter((p) => !isGone(p));
    let threads = 0;
    for (const p of pids) {
      try {
        threads += listTasks(p).length;
      } catch {
        // exited meanwhile
      }
    }
    return { processes: pids.length, threads, netns: this.opts.netConfig !== null, residentBytes: this.residentBytes };
  }

  /** One pre-copy round; `throttle` limits the tree's CPU for it (and the rounds after). */
  async round(n: number, wantThrottle: boolean): Promise<RoundReport> {
    const tracker = this.#tracker;
    if (!tracker || this.#stopped) throw new FerryError(ErrorCode.Unavailable, 'pre-copy session is closed');
    const t0 = performance.now();
    if (wantThrottle) this.#applyThrottle();
    this.#sampleCpu();
    const scan = await tracker.round();
    // Round 1 reports every page: those with data, and zero runs for the rest of each mapping.
    if (n === 1) this.#residentPages = scan.pagesDirty - scan.zeroPages;
    const scanAt = performance.now();
    const layout = this.#liveLayout(n, n === 1);
    const layoutBytes = await this.#sendLayout(n, layout);
    // The namespace is dumped again while the pages go, so the freeze need not wait for it.
    const dumping = n > 1 && this.opts.dumpNetns ? this.opts.dumpNetns() : null;
    const ps = await this.#sender.sendRound(scan, (pid, addr, data) => tracker.noteSent(pid, addr, data), this.#forks.plan(scan, layout), this.#progress('precopy', n, scan).frame);
    this.#lastRuns = new Map(scan.processes.map((p) => [p.pid, p.runs]));
    if (dumping) this.#netConfig = await dumping;
    const end = performance.now();
    const sinceLast = this.#lastScanAt > 0 ? scanAt - this.#lastScanAt : 0;
    this.#lastScanAt = scanAt;
    const dirtyRateBps = sinceLast > 0 ? (scan.pagesDirty * PAGE) / (sinceLast / 1000) : 0;
    // Pages dirtied while this round sent: what a switchover now would have to send.
    const remainingPages = n === 1 ? scan.pagesDirty : Math.min(scan.pagesScanned, Math.round((dirtyRateBps * ((end - scanAt) / 1000)) / PAGE));
    const report = this.#report(n, scan, ps, layoutBytes, end - t0, dirtyRateBps, remainingPages, this.#trackerStartMs);
    this.reports.push(report);
    return report;
  }

  /** The progress reports of round n, starting now (agent/migration/progress.ts). */
  #progress(phase: 'precopy' | 'transfer', n: number, scan: DirtyRound): RoundProgress {
    return new RoundProgress(this.opts.progress ?? null, { migrationId: this.opts.stream.migrationId, phase, round: n, pagesTotal: scan.pagesDirty });
  }

  #report(n: number, scan: DirtyRound, ps: PageRoundStats, layoutBytes: number, durationMs: number, dirtyRateBps: number, remainingPages: number, freezeSeenMs?: number): RoundReport {
    if (ps.bytesOnWire > 0) {
      this.#wire.bytes += ps.bytesOnWire;
      this.#wire.ms += ps.durationMs;
    }
    // Rounds carrying little are dominated by round trips: they do not lower the estimate much.
    const bandwidthBps = this.#wire.ms > 0 ? this.#wire.bytes / (this.#wire.ms / 1000) : ps.bandwidthBps;
    const fixedCosts = costModel.estimate(this.#size(), freezeSeenMs && this.#trackerMethod() === 'uffd-wp' ? freezeSeenMs : undefined);
    const ratio = ps.compressionRatio > 0 ? ps.compressionRatio : 1;
    const linkMeasured = this.#wire.bytes >= LINK_MEASURE_BYTES;
    // A link measured on a few pages is round trips: this round took as long as sending about as much will.
    const fullSendMs = bandwidthBps > 0 ? ((remainingPages * PAGE) / ratio / bandwidthBps) * 1000 : Number.POSITIVE_INFINITY;
    const sendMs = linkMeasured ? fullSendMs : Math.min(fullSendMs, durationMs);
    const predicted = fixedCosts.freezeMs + fixedCosts.dumpMs + fixedCosts.resumeMs + sendMs;
    return {
      round: n,
      pagesScanned: scan.pagesScanned,
      pagesDirty: scan.pagesDirty,
      pagesSent: ps.pagesSent,
      pagesZero: ps.zeroPages,
      bytesOnWire: ps.bytesOnWire + layoutBytes,
      compressionRatio: Math.round(ratio * 100) / 100,
      durationMs: Math.round(durationMs * 10) / 10,
      dirtyRateBps: Math.round(dirtyRateBps),
      bandwidthBps: Math.round(bandwidthBps),
      linkMeasured,
      predictedDowntimeMs: Number.isFinite(predicted) ? Math.round(predicted * 10) / 10 : 1e9,
      remainingPages,
      fixedCosts,
      tracker: this.#trackerMethod(),
      ...(this.#throttle ? { throttled: true, throttleCpus: this.#throttle.cpus } : {}),
    };
  }

  #trackerMethod(): string {
    const methods = [...new Set([...(this.#tracker?.methods.values() ?? [])].map((c) => c.method))];
    return methods.length === 1 ? methods[0]! : methods.length === 0 ? 'none' : `mixed: ${methods.join(', ')}`;
  }

  #applyThrottle(): void {
    const last = this.reports.at(-1);
    const cpus = throttleCpus(last?.dirtyRateBps ?? 0, last?.bandwidthBps ?? 0, this.#cpuUse.cpus, this.#throttle?.cpus ?? null);
    const pids = treeOf(this.root).filter((p) => !isGone(p));
    const rec = planThrottle(this.opts.stream.migrationId, cpus, this.opts.cgroupDir, this.#throttle, this.root);
    if (!rec) return; // no cpu controller on this host: the round runs at full speed
    // On record before it takes effect: whatever happens next, it can be undone.
    this.opts.onThrottle(rec);
    this.#throttle = rec;
    applyThrottle(rec, pids);
  }

  /** How many CPUs the tree used since the previous sample (user + system time of every process). */
  #sampleCpu(): void {
    let ticks = 0;
    for (const pid of treeOf(this.root)) {
      try {
        const st = readStat(pid);
        ticks += Number(st.f(14)) + Number(st.f(15));
      } catch {
        // exited meanwhile
      }
    }
    const now = performance.now();
    if (this.#cpuUse.at > 0 && now > this.#cpuUse.at) this.#cpuUse.cpus = Math.max(0, (ticks - this.#cpuUse.ticks) / 100 / ((now - this.#cpuUse.at) / 1000));
    this.#cpuUse.ticks = ticks;
    this.#cpuUse.at = now;
  }

  /** Full speed again (at the freeze: the frozen tree's injected calls must not crawl). */
  unthrottle(): void {
    unthrottle(this.#throttle);
  }

  /** The running tree's layout now (after the scan: a mapping made since is scanned next round). */
  #liveLayout(round: number, withNetns: boolean): PrecopyLayout {
    const pids = treeOf(this.root).filter((p) => !isGone(p));
    const ns = (pid: number): number => {
      if (!this.#container) return pid;
      try {
        return nsIds(pid).at(-1)!;
      } catch {
        return 0;
      }
    };
    const ids = new Map(pids.map((p) => [p, ns(p)]));
    const tr = (id: number): number => (this.#container ? (ids.get(id) ?? 0) : id);
    const processes: LayoutProcess[] = [];
    for (const pid of pids) {
      try {
        const st = readStat(pid);
        const vmas = readMaps(pid).map((m) =>
          layoutVma({ start: toHex(m.start), end: toHex(m.end), perms: m.perms, kind: vmaKind(m), ...(m.path.startsWith('/') ? { path: m.path } : {}), fileOffset: toHex(m.offset) }),
        );
        processes.push({ pid: tr(pid), hostPid: pid, ppid: tr(Number(st.f(4))), sid: tr(Number(st.f(6))), vmas });
      } catch {
        // exited meanwhile: the destination drops it
      }
    }
    if (processes.length === 0) throw new FerryError(ErrorCode.NotFound, `the workload (pid ${this.root}) exited during pre-copy`);
    // Read once: the destination needs the clocks and names only to create the container's husk
    // (round 1); the frozen image's names are what it finally gets (finalize).
    if (this.#container) this.#containerInfo ??= containerInfo(this.root);
    return { round, processes, container: this.#containerInfo, ...(withNetns ? { netns: this.opts.netConfig } : {}) };
  }

  /** The frozen tree's layout, exactly as the image will have it. */
  #frozenLayout(round: number, img: Image): PrecopyLayout {
    return {
      round,
      processes: img.processes.map((p) => ({ pid: p.pid, hostPid: p.hostPid, ppid: p.ppid, sid: p.sid, vmas: p.vmas.map(layoutVma) })),
      container: img.container ?? null,
    };
  }

  /** Sends the layout when it differs from the last one sent (container clocks aside); its bytes. */
  async #sendLayout(round: number, layout: PrecopyLayout): Promise<number> {
    const key = JSON.stringify({ p: layout.processes, n: layout.netns ?? null, u: layout.container ? [layout.container.hostname, layout.container.domainname] : null });
    if (key === this.#lastLayout) return 0;
    this.#lastLayout = key;
    const before = this.conn.bytesSent;
    await this.conn.send({ t: 'layout', round }, Buffer.from(JSON.stringify(layout)));
    return this.conn.bytesSent - before;
  }

  /**
   * After the freeze: the last delta, then the image without the pages the destination holds,
   * then the end of the session. `extra` files go along in the image directory.
   */
  async final(c: Checkpoint, imageDir: string, extra: Record<string, string>, postcopy = false): Promise<{ bytesTransferred: number; bytesOnWire: number; report: RoundReport; postcopy: PostcopySource | null; endTracking: () => void }> {
    const tracker = this.#tracker;
    if (!tracker || this.#stopped) throw new FerryError(ErrorCode.Unavailable, 'pre-copy session is closed');
    const t0 = performance.now();
    const wire0 = this.conn.bytesSent;
    const n = this.reports.length + 1;
    const full = await tracker.round({ allowInject: false });
    if (postcopy && !this.#faults) throw new FerryError(ErrorCode.Internal, 'post-copy switchover without a faults channel');
    const split = postcopy ? splitForPostcopy(full.processes, this.#lastRuns, restoreWrites(c.image())) : null;
    const scan = { ...full, ...(split ? { processes: split.now } : {}), frozen: true };
    const layout = this.#frozenLayout(n, c.image());
    const layoutBytes = await this.#sendLayout(n, layout);
    const ps = await this.#sender.sendRound(scan, (pid, addr, data) => tracker.noteSent(pid, addr, data), this.#forks.plan(scan, layout), this.#progress('transfer', n, scan).frame);
    // What the destination gets only after the resume, per process, before the page stream ends.
    for (const p of split?.later ?? []) {
      const runs = [...p.hot, ...p.cold].sort((a, b) => a.addr - b.addr);
      const table = Buffer.alloc(runs.length * ENTRY);
      writeEntries(table, 0, runs);
      await this.conn.send({ t: 'postcopy', pid: p.pid, n: runs.length }, table);
    }
    await this.#sender.finish();
    const tracked = new Map<number, TrackedRange[]>(scan.processes.map((p) => [p.pid, p.ranges]));
    prepareImageDir(imageDir);
    c.dumpMemory(imageDir, (pid, start, end) => (tracked.get(pid) ?? []).some((r) => r.start <= start && end <= r.end));
    writeImage(imageDir, c.image());
    for (const [name, text] of Object.entries(extra)) writeFileSync(path.join(imageDir, name), text);
    const sent = await sendImageDir(this.conn, imageDir);
    const report = this.#report(n, scan, ps, layoutBytes, performance.now() - t0, 0, 0);
    const later = split?.later.filter((p) => p.hot.length + p.cold.length > 0) ?? [];
    // The stream stays open for post-copy's push, the faults channel for its demand pages.
    const pages = later.reduce((a, p) => a + [...p.hot, ...p.cold].reduce((b, r) => b + r.pages, 0), 0);
    const progress = later.length > 0 ? new RoundProgress(this.opts.progress ?? null, { migrationId: this.opts.stream.migrationId, phase: 'postcopy', round: n, pagesTotal: pages }) : null;
    const pc = later.length > 0 ? new PostcopySource(this.conn, this.#faults!, later, progress ? progress.frame : null) : null;
    if (!pc) {
      await this.conn.end();
      this.#faults?.destroy();
    }
    this.#stopped = true;
    // Tracking ends later, by the caller: closing the userfaultfds unprotects every tracked page
    // (70 ms of one CPU for a GiB), which would compete with the destination's restore for this
    // host's CPUs inside the downtime. After the commit the original is killed first, and its
    // closing then finds no pages left to unprotect.
    const endTracking = (): void => {
      try {
        tracker.stop();
      } catch {
        // the workload is gone already
      }
    };
    return { bytesTransferred: ps.bytesRaw + sent.bytes, bytesOnWire: this.conn.bytesSent - wire0, report, postcopy: pc, endTracking };
  }

  /** Rollback or cleanup: tracking ends (the uffds close), the stream drops, full speed again. Never throws. */
  stop(): void {
    this.#stopped = true;
    try {
      this.#tracker?.stop();
    } catch {
      // already gone
    }
    this.conn.destroy();
    this.#faults?.destroy();
    unthrottle(this.#throttle);
  }
}

/** Per source pid, what a restore makes the kernel write in the process's memory: each thread's rseq area. */
function restoreWrites(img: Image): Map<number, Span[]> {
  return new Map(
    img.processes.map((p) => [
      p.hostPid,
      p.threads
        .flatMap((t) => (t.rseq ? [{ start: Number(fromHex(t.rseq.ptr)), end: Number(fromHex(t.rseq.ptr)) + Math.max(1, t.rseq.size) }] : []))
        .sort((a, b) => a.start - b.start),
    ]),
  );
}

/** The container's names and clocks, read from outside (nsenter into its uts namespace). */
function containerInfo(root: number): NonNullable<PrecopyLayout['container']> {
  const r = spawnSync('nsenter', ['-t', String(root), '-u', 'cat', '/proc/sys/kernel/hostname', '/proc/sys/kernel/domainname'], { encoding: 'utf8', timeout: 5000 });
  const [hostname = '', domainname = ''] = r.status === 0 ? r.stdout.split('\n') : [];
  const clocks = containerClocks(root);
  return { hostname, domainname, monotonicNs: String(clocks.monotonicNs), boottimeNs: String(clocks.boottimeNs) };
}
