// A husk is the process a restore turns into the checkpointed one: created with the saved PID,
// emptied, given the saved mappings, filled, and finally handed the saved registers. Each step
// is a method so the migration path can build and fill a husk during pre-copy and finish it
// after the freeze. This class is the façade restore.ts and the migration path use: it holds
// the husk's core (husk-core.ts: process, injection, shared state) and hands each step to the
// module of its resource, which restores it through that core.
import type { FdImage, Image, ProcessImage, SharedImage, ThreadImage, Vma } from '../../../shared/image-format.ts';
import * as files from '../files/restore-fds.ts';
import * as shared from '../files/restore-shared.ts';
import type { Span } from '../memory/layout.ts';
import * as memory from '../memory/mappings.ts';
import * as postcopy from '../memory/postcopy-husk.ts';
import type { Span as PageSpan } from '../memory/dirty/types.ts';
import type { LayoutLike, MappingSpec } from '../memory/mappings.ts';
import type { PagesReader } from '../memory/memory.ts';
import * as container from '../namespaces/container.ts';
import * as sockets from '../sockets/restore.ts';
import * as attributes from './attributes.ts';
import { HuskCore } from './husk-core.ts';
import * as signals from './signals.ts';
import * as threads from './threads.ts';
import * as timers from './timers.ts';
import type { LeaseGuard } from '../files/lock-sharing.ts';

export { protOf } from '../memory/mappings.ts';
export { resumeRegs } from './threads.ts';

export class Husk {
  private constructor(private readonly core: HuskCore) {}

  /**
   * Starts a detached launcher, gives it a scratch page, and clones the husk out of it with the
   * wanted PID; the launcher then dies so the husk belongs to init, not to the caller.
   */
  static create(pid: number, avoid: readonly Span[], netns?: string): Husk {
    return new Husk(HuskCore.create(pid, avoid, netns));
  }

  /** A container's root: pid 1 of its own namespaces, clocks continuing from the image's (namespaces/container.ts). */
  static createContainer(c: NonNullable<Image['container']>, avoid: readonly Span[], netns?: string): Husk {
    return new Husk(container.createContainerHusk(c, avoid, netns));
  }

  // --- the process -----------------------------------------------------------------------------

  /** As the agent sees it. */
  get pid(): number {
    return this.core.pid;
  }

  get tids(): readonly number[] {
    return this.core.tids;
  }

  /** The scratch area, which no mapping of the image may cover. */
  get scratchSpan(): Span {
    return this.core.scratchSpan;
  }

  /** buildMemory has run: a child forked now inherits this husk's mappings. */
  get memoryBuilt(): boolean {
    return this.core.memoryBuilt;
  }

  set memoryBuilt(v: boolean) {
    this.core.memoryBuilt = v;
  }

  /** Clones a child husk with the wanted PID out of this one; it shares the scratch address and the parked fds. */
  fork(pid: number): Husk {
    return new Husk(attributes.fork(this.core, pid));
  }

  /** A child that exits at once with its checkpointed wait status and stays a zombie. */
  zombie(pid: number, status: number): void {
    attributes.zombie(this.core, pid, status);
  }

  /** Collects a child husk that was killed (its pid as this husk sees it). */
  reap(pid: number): void {
    attributes.reap(this.core, pid);
  }

  /** Lets every thread run. */
  release(): void {
    this.core.release();
  }

  /** Kills whatever was built and consumes the exits so nothing is left behind. Never throws. */
  abort(): void {
    this.core.abort();
  }

  // --- memory (memory/mappings.ts) -------------------------------------------------------------

  clear(vmas: readonly Pick<Vma, 'start' | 'end' | 'kind' | 'inherit'>[]): void {
    memory.clear(this.core, vmas);
  }

  placeSpecials(vmas: readonly Pick<Vma, 'start' | 'end' | 'kind'>[]): void {
    memory.placeSpecials(this.core, vmas);
  }

  mapAll(vmas: readonly Vma[]): void {
    memory.mapAll(this.core, vmas);
  }

  mapOne(v: MappingSpec, prot: number): void {
    memory.mapOne(this.core, v, prot);
  }

  relayout(current: readonly LayoutLike[], next: readonly LayoutLike[]): void {
    memory.relayout(this.core, current, next);
  }

  unmapRange(start: bigint, end: bigint): void {
    memory.unmapRange(this.core, start, end);
  }

  protectRange(start: bigint, end: bigint, prot: number): void {
    memory.protectRange(this.core, start, end, prot);
  }

  writeRange(addr: bigint, data: Buffer): void {
    memory.writeRange(this.core, addr, data);
  }

  writePages(vmas: readonly Vma[], reader: PagesReader): void {
    memory.writePages(this.core, vmas, reader);
  }

  /** Post-copy: these pages read as missing from now on (the source holds newer copies). */
  dropPages(runs: readonly PageSpan[]): void {
    postcopy.dropPages(this.core, runs);
  }

  /** Post-copy: a userfaultfd of this husk's memory, held by the agent only (registered last, by registerMissing). */
  missingPagesUffd(): number {
    return postcopy.missingPagesUffd(this.core);
  }

  /** Post-copy, the last step of the restore: these ranges fault to the agent's uffd when a page is missing. */
  registerMissing(fd: number, ranges: readonly PageSpan[]): void {
    postcopy.registerMissing(this.core.pid, fd, ranges);
  }

  protectAll(vmas: readonly Vma[]): void {
    memory.protectAll(this.core, vmas);
  }

  adviseAll(vmas: readonly Vma[]): void {
    memory.adviseAll(this.core, vmas);
  }

  setMm(p: ProcessImage): void {
    memory.setMm(this.core, p);
  }

  // --- descriptors and sockets (files/, sockets/restore.ts) ------------------------------------

  createShared(sh: readonly SharedImage[], base: number, dir: string): void {
    shared.createShared(this.core, sh, base, dir);
  }

  inheritParked(root: Husk, rootPid: number): void {
    shared.inheritParked(this.core, root.core, rootPid);
  }

  restoreFds(fds: readonly FdImage[], leases?: LeaseGuard): void {
    files.restoreFds(this.core, fds, leases);
  }

  activateSockets(): void {
    sockets.activateSockets(this.core);
  }

  // --- process attributes (attributes.ts, namespaces/container.ts) -----------------------------

  leadSession(): void {
    attributes.leadSession(this.core);
  }

  setUts(c: { hostname: string; domainname: string }): void {
    container.setUts(this.core, c);
  }

  joinCgroup(p: ProcessImage): void {
    attributes.joinCgroup(this.core, p);
  }

  enterRoot(p: ProcessImage): void {
    attributes.enterRoot(this.core, p);
  }

  restoreProcessState(p: ProcessImage): void {
    attributes.restoreProcessState(this.core, p);
  }

  restoreCreds(p: ProcessImage): void {
    attributes.restoreCreds(this.core, p);
  }

  restoreProcessFlags(p: ProcessImage): void {
    attributes.restoreProcessFlags(this.core, p);
  }

  // --- signals, timers, threads ----------------------------------------------------------------

  setDisposition(sig: number, handler: 0n | 1n): void {
    signals.setDisposition(this.core, sig, handler);
  }

  restoreTrapAction(p: ProcessImage): void {
    signals.restoreTrapAction(this.core, p);
  }

  queueSharedSignals(p: ProcessImage): void {
    signals.queueSharedSignals(this.core, p);
  }

  restoreTimers(p: ProcessImage): void {
    timers.restoreTimers(this.core, p);
  }

  createThreads(p: ProcessImage): void {
    threads.createThreads(this.core, p);
  }

  restoreThreadState(t: ThreadImage, p: ProcessImage): void {
    threads.restoreThreadState(this.core, t, p);
  }

  setThreadRegs(t: ThreadImage): void {
    threads.setThreadRegs(this.core, t);
  }

  finishLeader(t: ThreadImage): void {
    threads.finishLeader(this.core, t);
  }
}
