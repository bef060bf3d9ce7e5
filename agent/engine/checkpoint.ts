// Checkpoint in parts: begin (preflight + freeze), collect (state that needs injection), dump
// memory, write the image, then end the original or let it run on. The live-migration path
// drives the same parts with memory rounds in between.
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { IMAGE_MAGIC, IMAGE_VERSION, type Image, type Machine, type PageRun, type ProcessImage, type SharedImage, toHex } from '../../shared/image-format.ts';
import { NT_X86_XSTATE, getRegset } from '../ffi/ptrace.ts';
import { O, closeFd, openFile, vmRead } from '../ffi/syscalls.ts';
import { sealedSystemMappings } from './probes.ts';
import { collectProcess } from './collect.ts';
import { machineFromProcess } from './image/compat.ts';
import { FrozenTree } from './process/freeze.ts';
import { prepareImageDir, writeImage } from './image/image-io.ts';
import { findSyscallSite } from './process/inject.ts';
import { containerClocks, isContainer, nsIdMap } from './namespaces/namespaces.ts';
import { readUts } from './namespaces/container.ts';
import { PagesWriter, type Range, findGuards, inheritable, selectCowPages, selectPages } from './memory/memory.ts';
import { preflight, treeOf } from './preflight.ts';
import { clearSocketTables } from './sockets/classify.ts';
import { RepairHold, linkSockets } from './sockets/sockets.ts';
import { linkShared, shmSources } from './files/sharing.ts';
import { listTasks, readMaps } from './process/procfs.ts';
import { readAhead, warmReadAhead } from './process/read-ahead.ts';

const chan = diagnostics_channel.channel('ferry:checkpoint');

/**
 * Pages kept in an append-only store (incremental checkpoints): a process's pages file is the
 * store's, what the freeze dumps is appended to it, and a mapping whose pages the store already
 * holds (`carried`, null when it does not) takes those runs.
 */
export interface StoreTarget {
  pagesFile(pid: number): string;
  writer(pid: number): PagesWriter;
  grew(pid: number, size: number): void;
  carried(pid: number, start: number, end: number): PageRun[] | null;
}

export interface CheckpointResult {
  pid: number;
  imagesDir: string;
  processes: number;
  threads: number;
  pagesBytes: number;
  frozenMs: number;
  totalMs: number;
}

export class Checkpoint {
  processes: ProcessImage[] = [];
  machine: Machine | null = null;
  shared: SharedImage[] = [];
  /** The container's clocks at the freeze, when the tree is a container. */
  clocks: { monotonicNs: bigint; boottimeNs: bigint } | null = null;
  private uts: { hostname: string; domainname: string } | null = null;
  /** The tree runs in a network namespace other than the agent's (read at collect, while it surely exists). */
  private ownNetns = false;
  /** TCP connections put into repair mode by collect(): closed silently by kill(), let go by release(). */
  private sockets = new RepairHold();
  private readonly t0 = performance.now();

  private constructor(
    readonly root: number,
    readonly tree: FrozenTree,
  ) {}

  /** Preflight, then freeze. Throws before touching the workload if something cannot be carried. */
  static begin(root: number, opts: { migration?: boolean; ownCgroup?: string | null } = {}): Checkpoint {
    warmReadAhead();
    const { container } = preflightTree(root, opts);
    const tree = FrozenTree.freezeTree(root, { ownCgroup: opts.ownCgroup ?? null });
    const clocks = container ? containerClocks(root) : null;
    // Children forked while the freeze landed were not in the first check.
    try {
      preflight(tree.pids, { allowChildren: true, container, tracedByUs: true, ...opts });
    } catch (err) {
      tree.release();
      throw err;
    }
    const c = new Checkpoint(root, tree);
    c.clocks = clocks;
    return c;
  }

  /** Everything but pages. Moves the tasks into group-stop first: injected calls cannot run frozen. */
  collect(): ProcessImage[] {
    // Frozen already: smaps (a page-table walk) is read on another thread meanwhile.
    const smaps = new Map(this.tree.pids.map((pid) => [pid, readAhead(`/proc/${pid}/smaps`)]));
    this.tree.enterGroupStop();
    clearSocketTables();
    this.processes = this.tree.pids.map((pid) => {
      const maps = readMaps(pid);
      const site = findSyscallSite(pid, maps);
      const tids = listTasks(pid);
      const p = collectProcess(pid, tids, site, maps, smaps.get(pid));
      p.cgroup = this.tree.originalCgroup(pid) ?? p.cgroup;
      if (!this.machine) this.machine = machineFromProcess(getRegset(pid, NT_X86_XSTATE), maps, sealedSystemMappings());
      return p;
    });
    this.shared = linkShared(this.processes);
    this.ownNetns = readlinkSync(`/proc/${this.root}/ns/net`) !== readlinkSync('/proc/self/ns/net');
    this.sockets.release();
    this.sockets = linkSockets(this.processes, this.shared);
    if (this.clocks) this.uts = readUts(this.root, this.processes[0]!);
    if (chan.hasSubscribers) chan.publish({ kind: 'collected', root: this.root, processes: this.processes.length });
    return this.processes;
  }

  /**
   * One range of a frozen process's memory, for callers that copy memory themselves (pre-copy
   * rounds of a live migration); pid is the host pid.
   */
  readRange(pid: number, addr: bigint, into: Buffer): void {
    if (!this.tree.pids.includes(pid)) throw new FerryError(ErrorCode.InvalidRequest, `pid ${pid} is not part of this checkpoint`);
    vmRead(pid, addr, into);
  }

  /**
   * Copies every page that must travel into the image directory and fills in the runs.
   * `precopied(pid, start, end)`: the mapping's content already reached the destination (live
   * migration); it is marked so and its pages stay out.
   * `cow`: a child's mapping inherited from its parent keeps the pages it still shares with it
   * out of its own runs (Vma.inherit); only restore() rebuilds such an image, forking each child
   * from its built parent.
   */
  dumpMemory(dir: string, precopied?: (pid: number, start: number, end: number) => boolean, opts: { cow?: boolean; store?: StoreTarget } = {}): number {
    let total = 0;
    // A parent's mapping a child inherits keeps its zero pages: a child sharing one must find it there.
    const inherited = new Set<string>();
    if (opts.cow && !precopied)
      for (const c of this.processes) {
        const q = this.processes.find((x) => x.pid === c.ppid);
        if (q) for (const v of c.vmas) if (inheritable(v, q.vmas)) inherited.add(`${q.pid}:${v.start}`);
      }
    const store = opts.store;
    for (const p of this.processes) {
      if (store) p.pagesFile = store.pagesFile(p.pid);
      const w = store ? store.writer(p.pid) : new PagesWriter(join(dir, p.pagesFile));
      const pm = openFile(`/proc/${p.pid}/pagemap`, O.RDONLY | O.CLOEXEC);
      const parent = opts.cow && !precopied ? this.processes.find((q) => q.pid === p.ppid) : undefined;
      const ppm = parent ? openFile(`/proc/${parent.pid}/pagemap`, O.RDONLY | O.CLOEXEC) : -1;
      const mem = openFile(`/proc/${p.pid}/mem`, O.RDONLY | O.CLOEXEC);
      try {
        for (const v of p.vmas) {
          if (!['anon', 'heap', 'stack', 'file-private'].includes(v.kind)) continue;
          const stored = store?.carried(p.pid, Number(v.start), Number(v.end));
          if (stored) {
            v.runs = stored;
            const guards = findGuards(pm, BigInt(v.start), BigInt(v.end));
            if (guards.length > 0) v.guards = guards.map((g) => ({ addr: toHex(g.addr), pages: g.pages }));
            continue;
          }
          if (precopied?.(p.pid, Number(v.start), Number(v.end))) {
            v.runs = [];
            v.precopied = true;
            // Guard markers are no pages, so pre-copy did not carry them.
            const guards = findGuards(pm, BigInt(v.start), BigInt(v.end));
            if (guards.length > 0) v.guards = guards.map((g) => ({ addr: toHex(g.addr), pages: g.pages }));
            continue;
          }
          const guards: Range[] = [];
          const twin = parent && inheritable(v, parent.vmas);
          const cow = twin ? selectCowPages(pm, ppm, BigInt(v.start), BigInt(v.end)) : null;
          if (cow && cow.shared > 0) {
            v.inherit = { zero: cow.zero.map((z) => ({ addr: toHex(z.addr), pages: z.pages })) };
            guards.push(...cow.guards);
          }
          const ranges = v.inherit && cow ? cow.own : selectPages(pm, BigInt(v.start), BigInt(v.end), v.kind === 'file-private', guards);
          if (guards.length > 0) v.guards = guards.map((g) => ({ addr: toHex(g.addr), pages: g.pages }));
          // An inherited mapping's zero pages are data too: skipping one would leave the parent's there.
          // Through /proc/PID/mem: PROT_NONE pages keep data too, and pages shared copy-on-write stay shared.
          v.runs = w.dump(p.pid, ranges, v.kind !== 'file-private' && !v.inherit && !inherited.has(`${p.pid}:${v.start}`), mem);
        }
      } finally {
        closeFd(mem);
        if (ppm >= 0) closeFd(ppm);
        closeFd(pm);
        w.close();
      }
      if (store) store.grew(p.pid, w.offset);
      p.pagesBytes = w.offset;
      total += w.offset;
    }
    this.shared.forEach((sh, idx) => {
      if (sh.kind !== 'memfd') return;
      const w = new PagesWriter(join(dir, sh.file));
      try {
        sh.runs = w.dumpFile(shmSources.get(idx)!, sh.size);
      } finally {
        w.close();
      }
      sh.bytes = w.offset;
      total += w.offset;
    });
    return total;
  }

  image(): Image {
    if (!this.machine) throw new FerryError(ErrorCode.Internal, 'checkpoint image requested before collect()');
    const processes = this.clocks ? toNamespaceIds(this.processes) : this.processes;
    return {
      magic: IMAGE_MAGIC,
      version: IMAGE_VERSION,
      createdAt: new Date().toISOString(),
      machine: this.machine,
      root: this.root,
      ...(this.ownNetns ? { ownNetns: true } : {}),
      processes,
      shared: this.shared,
      ...(this.clocks && this.uts ? { container: { ...this.uts, monotonicNs: String(this.clocks.monotonicNs), boottimeNs: String(this.clocks.boottimeNs) } } : {}),
      stats: {
        frozenMs: performance.now() - this.tree.frozenAt,
        totalMs: performance.now() - this.t0,
        pagesBytes: this.processes.reduce((a, p) => a + p.pagesBytes, 0) + this.shared.reduce((a, s) => a + (s.kind === 'memfd' ? s.bytes : 0), 0),
      },
    };
  }

  /** The workload runs on as if nothing happened (its TCP connections leave repair mode first). */
  release(): void {
    this.sockets.release();
    this.tree.release();
  }

  /** Ends the original; its TCP connections close in repair mode, so the peers see no FIN or RST. */
  kill(): void {
    this.tree.kill();
    this.sockets.close();
  }
}

/** Everything the engine would refuse about the tree under root, before anything is frozen. */
export function preflightTree(root: number, opts: { migration?: boolean } = {}): { pids: number[]; container: boolean } {
  // A checkpoint follows: its reading thread starts now, not inside the freeze.
  warmReadAhead();
  const pids = treeOf(root);
  const container = existsSync(`/proc/${root}`) ? isContainer(root, pids) : false;
  preflight(pids, { allowChildren: true, container, ...opts });
  return { pids, container };
}

/** Ids as the container sees them; the pages file names follow. */
function toNamespaceIds(procs: readonly ProcessImage[]): ProcessImage[] {
  const m = nsIdMap(procs.flatMap((p) => [p.hostPid, ...(p.zombies ?? []).map((z) => z.pid)]));
  const tr = (id: number) => m.get(id) ?? 0; // outside the container: invisible to it
  return procs.map((p) => ({
    ...p,
    pid: tr(p.pid),
    ppid: tr(p.ppid),
    pgid: tr(p.pgid),
    sid: tr(p.sid),
    zombies: (p.zombies ?? []).map((z) => ({ ...z, pid: tr(z.pid) })).filter((z) => z.pid > 0),
    threads: p.threads.map((t) => ({ ...t, tid: tr(t.tid) })),
    posixTimers: p.posixTimers.map((t) => ({ ...t, tid: t.notify === 4 ? tr(t.tid) : t.tid })),
  }));
}

/** How much an image holds: processes, threads, and bytes of pages. */
export const imageTotals = (img: Image): { processes: number; threads: number; pagesBytes: number } => ({
  processes: img.processes.length,
  threads: img.processes.reduce((a, p) => a + p.threads.length, 0),
  pagesBytes: img.stats.pagesBytes,
});

/** One-shot checkpoint to a directory. On any failure the workload is released and runs on. */
export function checkpoint(pid: number, opts: { imagesDir: string; leaveRunning?: boolean }): CheckpointResult {
  const t0 = performance.now();
  const created = !existsSync(opts.imagesDir);
  prepareImageDir(opts.imagesDir);
  // A refused or failed checkpoint leaves no half-written image directory behind.
  const discard = () => {
    if (created) rmSync(opts.imagesDir, { recursive: true, force: true });
  };
  let c: Checkpoint;
  try {
    c = Checkpoint.begin(pid);
  } catch (err) {
    discard();
    throw err;
  }
  let img: Image;
  try {
    c.collect();
    c.dumpMemory(opts.imagesDir, undefined, { cow: true });
    img = c.image();
    writeImage(opts.imagesDir, img);
  } catch (err) {
    c.release();
    discard();
    throw err;
  }
  const frozenMs = performance.now() - c.tree.frozenAt;
  if (opts.leaveRunning) c.release();
  else c.kill();
  const result = {
    pid,
    imagesDir: opts.imagesDir,
    ...imageTotals(img),
    frozenMs,
    totalMs: performance.now() - t0,
  };
  if (chan.hasSubscribers) chan.publish({ kind: 'done', ...result });
  return result;
}
