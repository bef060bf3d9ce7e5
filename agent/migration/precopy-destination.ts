// The destination's side of a live migration (docs/precopy.md): warm restore. From the first
// layout on, the tree's husks exist (with their pids, in a rebuilt network namespace, a
// container's time namespace offset so its clocks run on), their mappings follow the source's
// layout round by round, and arriving pages go straight into them. After the freeze only the
// last delta arrives, with the image of everything else; finalize() reconciles what the layouts
// could not carry (shared objects, shared memory, mappings that were not pre-copied) and builds
// the rest of each process, which then waits stopped for the commit like a cold-built one.
// A process joins the tree here only when the source says so inside a round (a `fork` frame,
// after its parent's pages of that round): forked from its parent's husk then, it inherits the
// pages the two still share copy-on-write, which the source therefore sends to the parent only.
import diagnostics_channel from 'node:diagnostics_channel';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type Image, type ProcessImage, type Vma, fromHex } from '../../shared/image-format.ts';
import { type LayoutVma, PrecopyLayout } from '../../shared/precopy.ts';
import { O, closeFd, openFile, vmRead, vmWrite } from '../ffi/syscalls.ts';
import { Husk } from '../engine/process/husk.ts';
import { PRIVATE_KINDS, SPECIAL_KINDS, protOf, warmProt } from '../engine/memory/mappings.ts';
import { PAGE, PagesReader, selectPages } from '../engine/memory/memory.ts';
import type { Span } from '../engine/memory/dirty/types.ts';
import { buildState, enterCgroups } from '../engine/restore.ts';
import { LandingCheck } from '../engine/verify/index.ts';
import { readTable } from '../transfer/page-table.ts';
import { MissingPages } from './postcopy-pages.ts';
import type { PostcopyTarget } from './postcopy-destination.ts';
import type { Frame } from '../transfer/frames.ts';
import { type PageSink, ProcessSink } from '../transfer/page-sinks.ts';
import { PageReceiver, type ReceivedRound } from '../transfer/page-receiver.ts';
import type { DataConnection } from '../transfer/stream.ts';
import type { LandedNetns, NetworkHandoff } from '../net/handoff.ts';
import type { LeaseGuard } from '../engine/files/lock-sharing.ts';

const chan = diagnostics_channel.channel('ferry:precopy');

export interface WarmDeps {
  network: NetworkHandoff;
  /** The name the workload's namespace gets here, put on record before it is built (rollback after a restart removes it). */
  landing: () => string | null;
  /** cgroup.procs files of the workload's groups here: the root husk joins them before any page arrives. */
  cgroupProcs: () => string[];
  /** Check pages as they land (default on). */
  verify?: boolean;
  /** The last delta begins (the source froze the workload): this side's switchover work starts. */
  switchover?: () => void;
}

interface Member {
  husk: Husk;
  ppid: number;
  /** The layout this husk has now. */
  vmas: LayoutVma[];
}

/** A process of the layout whose husk is not made yet (it is forked when the stream says so). */
interface Pending {
  ppid: number;
  vmas: LayoutVma[];
}

export class PrecopyDestination {
  readonly #members = new Map<number, Member>();
  readonly #pending = new Map<number, Pending>();
  /** Source host pid -> the pid the tree knows (the page stream names processes by the former). */
  readonly #byHost = new Map<number, number>();
  #root: number | null = null;
  #container = false;
  net: LandedNetns | null = null;
  readonly rounds: ReceivedRound[] = [];
  /** Verification of pages as they land (null: off). */
  readonly landing: LandingCheck | null;
  readonly #sink: ProcessSink;
  #closed = false;
  /** Source pid -> the pages it holds for after the resume (post-copy). */
  readonly #outstanding = new Map<number, Span[]>();
  /** The registrations finalize made for post-copy, one per process that lacks pages. */
  postcopyTargets: PostcopyTarget[] = [];
  /** What armPostcopy does once the restore is done with memory: per husk, the pages to drop and the ranges to register. */
  readonly #arming: { husk: Husk; fd: number; runs: Span[]; ranges: Span[] }[] = [];

  /** Per source pid, the pages it holds for after the resume, sorted (what a backup on shared storage holds, in order). */
  get outstandingRuns(): Map<number, Span[]> {
    return new Map(this.#outstanding);
  }

  /** The source switched over to post-copy: pages arrive after the resume. */
  get postcopy(): boolean {
    return this.#outstanding.size > 0;
  }

  constructor(private readonly d: WarmDeps) {
    this.landing = d.verify === false ? null : new LandingCheck();
    const landing = this.landing;
    // Only husks made already: a process gets its husk from its `fork` frame, before its pages.
    const target = (hostPid: number) => {
      const pid = this.#byHost.get(hostPid);
      return pid === undefined ? 0 : (this.#members.get(pid)?.husk.pid ?? 0);
    };
    const ref = (src: number, dst: number) => ({ pid: this.#byHost.get(src) ?? src, hostPid: dst });
    this.#sink = new ProcessSink(
      target,
      true,
      landing ? (src, dst, addr, data) => landing.check(ref(src, dst), addr, data) : undefined,
      landing ? (src, dst, runs, data) => landing.checkRuns(ref(src, dst), runs, data) : undefined,
    );
  }

  /** Applies layouts and rounds until the source ends the page stream. */
  async run(conn: DataConnection): Promise<void> {
    const sink = this.#sink;
    const pages: PageSink = {
      write: (pid, addr, data) => sink.write(pid, addr, data),
      writeRuns: (pid, runs, data) => sink.writeRuns(pid, runs, data),
      zero: (pid, addr, n) => sink.zero(pid, addr, n),
      drop: (pid) => sink.drop(pid),
      born: (hostPid, inherit) => {
        const pid = this.#byHost.get(hostPid);
        if (pid !== undefined) this.#member(pid, inherit);
      },
    };
    const receiver = new PageReceiver(conn, pages, (f) => this.#onControl(f), () => this.d.switchover?.());
    for (;;) {
      const r = await receiver.receiveRound();
      if (!r) break;
      this.rounds.push(r);
      this.landing?.endRound();
      if (chan.hasSubscribers) chan.publish({ kind: 'round', round: r.round, pages: r.pagesWritten, zero: r.zeroPages, skipped: this.#sink.pagesSkipped });
    }
    this.#sink.close();
  }

  async #onControl(f: Frame): Promise<void> {
    if (f.header.t === 'postcopy') {
      // Keyed by the source's pid, as the page frames are (the image names it as hostPid).
      const runs = readTable(f.payload, f.header.n).map((e) => ({ start: e.addr, end: e.addr + e.pages * PAGE }));
      this.#outstanding.set(f.header.pid, runs);
      return;
    }
    if (f.header.t !== 'layout') throw new FerryError(ErrorCode.BadMessage, `pre-copy stream: unexpected "${f.header.t}"`);
    const parsed = PrecopyLayout.safeParse(JSON.parse(f.payload.toString('utf8')));
    if (!parsed.success) throw new FerryError(ErrorCode.BadMessage, `pre-copy layout: ${parsed.error.message}`);
    await this.apply(parsed.data);
  }

  /** Brings the husks to a layout: new processes get a husk, exited ones lose theirs, mappings follow. */
  async apply(l: PrecopyLayout): Promise<void> {
    if (this.#closed) throw new FerryError(ErrorCode.Unavailable, 'warm restore was discarded');
    const t0 = performance.now();
    const root = l.processes[0]!;
    if (this.#root === null) await this.#start(l);
    else if (root.pid !== this.#root) throw new FerryError(ErrorCode.Unsupported, `the tree's root changed during pre-copy (${this.#root} -> ${root.pid})`);
    const present = new Set(l.processes.map((p) => p.pid));
    // Gone at the source: children first, each collected by its parent so the workload never sees it.
    for (const pid of this.#pending.keys()) if (!present.has(pid)) this.#pending.delete(pid);
    for (const [pid, m] of [...this.#members].reverse()) {
      if (present.has(pid)) continue;
      if (pid === this.#root) throw new FerryError(ErrorCode.NotFound, 'the workload exited during pre-copy');
      m.husk.abort();
      this.#members.delete(pid);
      (this.#members.get(m.ppid) ?? this.#members.get(this.#root!))?.husk.reap(pid);
    }
    this.#byHost.clear();
    for (const p of l.processes) {
      this.#byHost.set(p.hostPid, p.pid);
      const m = this.#members.get(p.pid);
      if (!m) {
        // Made when the stream forks it (#member), from its parent as it stands then.
        this.#pending.set(p.pid, { ppid: p.ppid, vmas: p.vmas });
        continue;
      }
      m.husk.relayout(m.vmas, p.vmas);
      m.vmas = p.vmas;
      m.ppid = p.ppid;
    }
    if (chan.hasSubscribers) chan.publish({ kind: 'layout', round: l.round, processes: l.processes.length, ms: performance.now() - t0 });
  }

  /**
   * The process's husk; a pending one is forked now from its parent's husk (a pending parent
   * first) and reshaped to its own layout: what it shares with the parent stays as the parent
   * holds it, and its own pages and zero runs follow in the stream. `inherit`: the pages it
   * shares with the parent at the source; those the parent's husk holds as no page (an all-zero
   * page arrives as a zero run) are made real zero pages first, so they are shared too.
   */
  #member(pid: number, inherit: readonly Span[] = []): Member | undefined {
    const have = this.#members.get(pid);
    if (have) return have;
    const want = this.#pending.get(pid);
    if (!want) return undefined;
    // Re-parented out of the tree's reach (to an init outside it): a cold build would refuse it too.
    const parent = this.#member(want.ppid);
    if (!parent) throw new FerryError(ErrorCode.Unsupported, `process ${pid}: its parent ${want.ppid} is not in the tree`);
    fillHoles(parent.husk.pid, inherit);
    const m: Member = { husk: parent.husk.fork(pid), ppid: want.ppid, vmas: parent.vmas };
    this.#members.set(pid, m);
    this.#pending.delete(pid);
    m.husk.relayout(m.vmas, want.vmas);
    m.vmas = want.vmas;
    return m;
  }

  /** The first layout: the namespace is rebuilt and the root husk made, emptied and shaped. */
  async #start(l: PrecopyLayout): Promise<void> {
    const root = l.processes[0]!;
    if (l.netns) {
      const name = this.d.landing();
      if (!name) throw new FerryError(ErrorCode.Incompatible, 'this host has no workload network configured: it cannot take a workload with a network namespace of its own');
      this.net = await this.d.network.land(l.netns, name);
    }
    const avoid = l.processes.flatMap((p) => p.vmas.map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) })));
    const netns = this.net?.handle.path;
    this.#container = l.container !== null;
    const husk = l.container ? Husk.createContainer(l.container, avoid, netns) : Husk.create(root.pid, avoid, netns);
    this.#root = root.pid;
    this.#members.set(root.pid, { husk, ppid: root.ppid, vmas: [] });
    enterCgroups(husk.pid, this.d.cgroupProcs());
    if (root.sid === root.pid) husk.leadSession();
    husk.clear(root.vmas);
  }

  get started(): boolean {
    return this.#root !== null;
  }

  /**
   * After the last delta: every process of the image built in its husk up to its registers.
   * Mappings that were not pre-copied are made afresh and filled from the image, shared objects
   * are made in the root and handed to every other husk, then the rest of each process.
   */
  finalize(img: Image, dir: string, leases?: LeaseGuard): Map<number, Husk> {
    if (this.#root !== img.processes[0]!.pid || this.#container !== !!img.container)
      throw new FerryError(ErrorCode.Internal, 'the image does not describe the tree built during pre-copy');
    // A process no round scanned (one sharing another's memory, CLONE_VM) is forked now.
    for (const p of img.processes) if (!this.#member(p.pid)) throw new FerryError(ErrorCode.Internal, `process ${p.pid} of the image has no husk`);
    const husks = new Map(img.processes.map((p) => [p.pid, this.#members.get(p.pid)!.husk]));
    const root = husks.get(this.#root)!;
    if (img.container) root.setUts(img.container);
    // Shapes first (the last layout was the image's own, so this changes nothing unless a process
    // was missed), then what travelled in the image.
    for (const p of img.processes) {
      const m = this.#members.get(p.pid)!;
      m.husk.relayout(m.vmas, p.vmas);
      m.vmas = p.vmas;
      this.#coldParts(m.husk, p, dir);
    }
    if (img.shared.length > 0) {
      const maxFd = Math.max(0, ...img.processes.flatMap((p) => p.fds.map((f) => f.fd)));
      root.createShared(img.shared, maxFd + 64, dir);
      for (const p of img.processes.slice(1)) husks.get(p.pid)!.inheritParked(root, img.processes[0]!.pid);
    }
    // Exited children not yet waited for come back as zombies of their built parents, as at a cold restore.
    for (const p of img.processes) for (const z of p.zombies ?? []) husks.get(p.pid)!.zombie(z.pid, z.status);
    for (const p of img.processes) {
      const h = husks.get(p.pid)!;
      for (const v of p.vmas) if (v.kind === 'shm') h.mapOne(v, protOf(v.perms));
      for (const v of p.vmas) remakeFlagged(h, v);
      // Back to the image's protections where pages could still be written.
      for (const v of p.vmas) if (PRIVATE_KINDS.has(v.kind) && warmProt(v) !== protOf(v.perms)) h.protectRange(fromHex(v.start), fromHex(v.end), protOf(v.perms));
      h.adviseAll(p.vmas);
      // Made while the husk is still root (buildState gives it the workload's credentials).
      this.#prepareMissing(h, p);
      buildState(h, p, leases);
    }
    return husks;
  }

  /** Drops the pages the source holds newer copies of, and registers their mappings for missing-page faults. */
  #prepareMissing(h: Husk, p: ProcessImage): void {
    const runs = this.#outstanding.get(p.hostPid);
    if (!runs || runs.length === 0) return;
    const anon = p.vmas.filter((v) => MISSING_KINDS.has(v.kind)).map((v) => ({ start: Number(fromHex(v.start)), end: Number(fromHex(v.end)) }));
    const outside = runs.find((r) => !anon.some((v) => v.start <= r.start && r.end <= v.end));
    if (outside) throw new FerryError(ErrorCode.BadMessage, `post-copy: pages at ${outside.start.toString(16)} of process ${p.pid} are not in anonymous memory`);
    const ranges = anon.filter((v) => runs.some((r) => r.start < v.end && v.start < r.end));
    const fd = h.missingPagesUffd();
    this.postcopyTargets.push({ fd, sourcePid: p.hostPid, pages: new MissingPages(runs) });
    this.#arming.push({ husk: h, fd, runs, ranges });
  }

  /**
   * The last step of a post-copy restore, once every thread has its state (nothing of the
   * restore touches memory after it): the stale pages go, and their mappings fault to the agent.
   * Returns the function that does it, for the builder (which holds the husks after detach()).
   */
  get armPostcopy(): () => void {
    const arming = [...this.#arming];
    return () => {
      for (const a of arming) {
        a.husk.dropPages(a.runs);
        a.husk.registerMissing(a.fd, a.ranges);
      }
    };
  }

  /** Private mappings whose content did not come through pre-copy: made afresh, filled from the image. */
  #coldParts(h: Husk, p: ProcessImage, dir: string): void {
    const cold = p.vmas.filter((v) => PRIVATE_KINDS.has(v.kind) && !v.precopied && !SPECIAL_KINDS.has(v.kind));
    if (cold.length === 0) return;
    for (const v of cold) {
      h.unmapRange(fromHex(v.start), fromHex(v.end));
      h.mapOne(v, warmProt(v));
    }
    if (!cold.some((v) => v.runs.length > 0)) return;
    const reader = new PagesReader(join(dir, p.pagesFile));
    try {
      h.writePages(cold, reader);
    } finally {
      reader.close();
    }
  }

  /** Hands the husks over (finalize's result now belongs to the caller). */
  detach(): void {
    this.#members.clear();
    this.#pending.clear();
    this.#closed = true;
  }

  /** Rollback: every husk dies, the rebuilt namespace goes. Never throws. */
  async discard(): Promise<void> {
    this.#closed = true;
    closeTargets(this.postcopyTargets);
    this.postcopyTargets = [];
    this.#sink.close();
    for (const m of [...this.#members.values()].reverse()) m.husk.abort();
    this.#members.clear();
    this.#pending.clear();
    await this.d.network.discard(this.net, null).catch(() => undefined);
    this.net = null;
  }
}

const ZEROS = Buffer.alloc(1 << 20);

/** The mappings whose missing pages userfaultfd can fill (anonymous private memory). */
const MISSING_KINDS = new Set(['anon', 'heap', 'stack']);

/** Closes post-copy registrations that will not be used (their husks die with them). */
export function closeTargets(targets: readonly PostcopyTarget[]): void {
  for (const t of targets) {
    try {
      closeFd(t.fd);
    } catch {
      // closed already
    }
  }
}

/** Writes a zero page wherever the process has none in `spans` (its content there reads as zeros already). */
function fillHoles(pid: number, spans: readonly Span[]): void {
  if (spans.length === 0) return;
  const pm = openFile(`/proc/${pid}/pagemap`, O.RDONLY | O.CLOEXEC);
  try {
    for (const s of spans) {
      let at = s.start;
      const holes: Span[] = [];
      for (const r of selectPages(pm, BigInt(s.start), BigInt(s.end), false)) {
        if (Number(r.addr) > at) holes.push({ start: at, end: Number(r.addr) });
        at = Number(r.addr) + r.pages * PAGE;
      }
      if (at < s.end) holes.push({ start: at, end: s.end });
      for (const h of holes) for (let a = h.start; a < h.end; a += ZEROS.length) vmWrite(pid, BigInt(a), ZEROS.subarray(0, Math.min(ZEROS.length, h.end - a)));
    }
  } finally {
    closeFd(pm);
  }
}

/**
 * Mapping flags the layouts do not carry (smaps is read once, at the freeze): a grows-down area
 * made during pre-copy is made again as one, keeping its content, and a shared file mapping the
 * workload may make writable is mapped again from the file opened for writing (its content is
 * the file's). A mapping made cold (#coldParts) had them from the start, and so has the stack
 * (pre-copy maps it grows-down): remaking it would give pages it shares copy-on-write with a
 * parent or child private copies.
 */
function remakeFlagged(h: Husk, v: Vma): void {
  const start = fromHex(v.start);
  const end = fromHex(v.end);
  if (v.kind === 'file-shared' && v.mayWrite && v.perms[1] !== 'w') {
    h.unmapRange(start, end);
    h.mapOne(v, protOf(v.perms));
  } else if (v.growsDown && v.precopied && v.kind !== 'stack' && PRIVATE_KINDS.has(v.kind)) {
    const rw = protOf('rw-');
    h.protectRange(start, end, rw);
    const content = Buffer.alloc(Number(end - start));
    vmRead(h.pid, start, content);
    h.unmapRange(start, end);
    h.mapOne(v, rw);
    vmWrite(h.pid, start, content);
  }
}
