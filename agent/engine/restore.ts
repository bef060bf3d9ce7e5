// Restore from an image directory: check the machine, build a husk per process, fill it, and
// let it run. Any failure kills what was built.
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type Image, type ProcessImage, fromHex } from '../../shared/image-format.ts';
import { assertCompatible } from './image/compat.ts';
import { Husk } from './process/husk.ts';
import { readImage } from './image/image-io.ts';
import { PagesReader } from './memory/memory.ts';
import { isDying } from './process/procfs.ts';
import type { VerifyReport } from '../../shared/verify.ts';
import { verifyTree } from './verify/index.ts';
import { corruptIfArmed } from './verify/corrupt.ts';
import { LeaseGuard, leaseViewReadAhead } from './files/lock-sharing.ts';

const chan = diagnostics_channel.channel('ferry:restore');

export interface RestoreResult {
  pid: number;
  processes: number;
  threads: number;
  pagesBytes: number;
  totalMs: number;
  memoryMs: number;
  /** With `verify`: what the comparison with the image covered. */
  verify?: VerifyReport;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * A killed original stays a zombie until its parent (often init) reaps it, which can take a
 * moment; a live process holding the pid is a conflict.
 */
export function waitPidFree(pid: number, timeoutMs = 5000): void {
  const deadline = performance.now() + timeoutMs;
  while (existsSync(`/proc/${pid}`)) {
    // A process still exiting (the original, just killed) frees its pid soon; a live one does not.
    if (!isDying(pid) || performance.now() > deadline) throw new FerryError(ErrorCode.Conflict, `pid ${pid} is in use: cannot restore into it`, { details: { pid } });
    Atomics.wait(sleeper, 0, 0, 5);
  }
}

/** Builds one process in its husk up to the point where only registers are missing. */
export function buildProcess(husk: Husk, p: ProcessImage, dir: string, leases?: LeaseGuard): { memoryMs: number } {
  const r = buildMemory(husk, p, dir);
  buildState(husk, p, leases);
  return r;
}

/** The memory part of a cold build: the husk emptied, the image's mappings made and filled from its pages files. */
export function buildMemory(husk: Husk, p: ProcessImage, dir: string): { memoryMs: number } {
  husk.clear(p.vmas);
  husk.mapAll(p.vmas);
  const t = performance.now();
  const reader = new PagesReader(join(dir, p.pagesFile));
  try {
    husk.writePages(p.vmas, reader);
  } finally {
    reader.close();
  }
  const memoryMs = performance.now() - t;
  husk.protectAll(p.vmas);
  husk.adviseAll(p.vmas);
  husk.memoryBuilt = true;
  return { memoryMs };
}

/**
 * Everything but memory and registers: cgroup, mm fields, descriptors, process state, threads,
 * timers, credentials (last). A live migration's warm restore fills memory its own way, then
 * calls this.
 */
export function buildState(husk: Husk, p: ProcessImage, leases?: LeaseGuard): void {
  husk.joinCgroup(p);
  husk.setMm(p);
  husk.restoreFds(p.fds, leases);
  husk.restoreProcessState(p);
  husk.createThreads(p);
  husk.restoreTimers(p);
  husk.enterRoot(p);
  husk.restoreCreds(p);
  husk.restoreProcessFlags(p);
}

/** Registers and per-thread state go in last; the process stays stopped until release(). */
export function finishProcess(husk: Husk, p: ProcessImage): void {
  // TCP connections talk from here on: the network must be reachable (unlocked) by now.
  husk.activateSockets();
  finishThreads(husk, p);
}

/** finishProcess without the sockets: a tree held for a commit keeps its connections in repair mode. */
export function finishThreads(husk: Husk, p: ProcessImage): void {
  husk.queueSharedSignals(p);
  for (const t of p.threads) husk.restoreThreadState(t, p);
  husk.restoreTrapAction(p);
  for (const t of p.threads) if (t.tid !== p.pid) husk.setThreadRegs(t);
  const leader = p.threads.find((t) => t.tid === p.pid);
  if (!leader) throw new FerryError(ErrorCode.BadImage, `process ${p.pid} has no leader thread in the image`);
  husk.finishLeader(leader);
}

export interface RestoreOptions {
  /**
   * Network namespace file (/run/netns/NAME, /proc/PID/ns/net) the tree is restored into; its
   * sockets are created there. Required when the image's tree had a namespace of its own.
   */
  netns?: string;
  /**
   * restore() only: runs once the tree is built, before its TCP connections leave repair mode
   * and it runs: the moment to attach the namespace and announce its addresses.
   */
  beforeRun?: () => void;
  /**
   * cgroup.procs files the root husk joins as soon as it exists, before any memory is written:
   * the tree is charged to, and limited by, the workload's own groups from its first page.
   */
  cgroupProcs?: readonly string[];
  /** restore() only: the v2 group (relative to the cgroup2 root) every process joins instead of the one the image names. */
  cgroup?: string;
}

/** Moves a (husk) process into each group; its later children are born there. */
export function enterCgroups(pid: number, procsFiles: readonly string[]): void {
  for (const f of procsFiles) writeFileSync(f, String(pid));
}

/**
 * Creates every husk of the tree with its PID, parents first, so each child is the child of
 * its own parent; shared descriptions (sockets too, TCP connections in repair mode) are made in
 * the root before any child exists.
 */
export function createHusks(img: Image, dir: string, opts: RestoreOptions & { rootOnly?: boolean } = {}): Map<number, Husk> {
  const husks = new Map<number, Husk>();
  const root = img.processes[0]!;
  if (img.ownNetns && !opts.netns)
    throw new FerryError(ErrorCode.InvalidRequest, 'the image was taken in a network namespace of its own: restore needs a target namespace (netns)', { details: { root: root.pid } });
  if (opts.netns && !existsSync(opts.netns)) throw new FerryError(ErrorCode.NotFound, `network namespace ${opts.netns} does not exist`, { details: { netns: opts.netns } });
  const avoid = img.processes.flatMap((p) => p.vmas.map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) })));
  try {
    const rh = img.container ? Husk.createContainer(img.container, avoid, opts.netns) : Husk.create(root.pid, avoid, opts.netns);
    husks.set(root.pid, rh);
    enterCgroups(rh.pid, opts.cgroupProcs ?? []);
    if (root.sid === root.pid) rh.leadSession();
    if (img.shared.length > 0) {
      const maxFd = Math.max(0, ...img.processes.flatMap((p) => p.fds.map((f) => f.fd)));
      rh.createShared(img.shared, maxFd + 64, dir);
    }
    if (opts.rootOnly) return husks;
    for (const p of img.processes.slice(1)) husks.set(p.pid, forkChild(husks, p));
    addZombies(husks, img);
    return husks;
  } catch (err) {
    for (const h of [...husks.values()].reverse()) h.abort();
    throw err;
  }
}

function forkChild(husks: Map<number, Husk>, p: ProcessImage): Husk {
  const parent = husks.get(p.ppid);
  if (!parent) throw new FerryError(ErrorCode.BadImage, `process ${p.pid}: its parent ${p.ppid} is not in the image before it`);
  return parent.fork(p.pid);
}

function addZombies(husks: Map<number, Husk>, img: Image): void {
  for (const p of img.processes) for (const z of p.zombies ?? []) husks.get(p.pid)!.zombie(z.pid, z.status);
}

/**
 * The whole tree's memory, parents first; each child is forked from its parent once the
 * parent's memory is built, so memory they shared copy-on-write is shared again (Vma.inherit).
 */
function buildTreeMemory(husks: Map<number, Husk>, img: Image, dir: string): number {
  let memoryMs = 0;
  for (const p of img.processes) {
    if (!husks.has(p.pid)) husks.set(p.pid, forkChild(husks, p));
    memoryMs += buildMemory(husks.get(p.pid)!, p, dir).memoryMs;
  }
  addZombies(husks, img);
  return memoryMs;
}

/**
 * `verify`: before the tree runs, it is compared with the image (verify/); a difference kills it
 * and throws FERRY_VERIFY_MISMATCH.
 */
export function restore(dir: string, opts: RestoreOptions & { skipMachineCheck?: boolean; verify?: boolean } = {}): RestoreResult {
  const t0 = performance.now();
  const leases = new LeaseGuard(leaseViewReadAhead());
  const img = readImage(dir);
  if (opts.cgroup) for (const p of img.processes) p.cgroup = opts.cgroup;
  if (!opts.skipMachineCheck) assertCompatible(img.machine);
  if (!img.container) for (const p of img.processes) for (const pid of [p.pid, ...(p.zombies ?? []).map((z) => z.pid)]) waitPidFree(pid);
  const husks = createHusks(img, dir, { ...opts, rootOnly: true });
  let memoryMs = 0;
  let verify: VerifyReport | undefined;
  try {
    memoryMs = buildTreeMemory(husks, img, dir);
    for (const p of img.processes) buildState(husks.get(p.pid)!, p, leases);
    corruptIfArmed(img, husks);
    opts.beforeRun?.();
    for (const p of img.processes) finishProcess(husks.get(p.pid)!, p);
    if (opts.verify) verify = verifyTree(img, img.processes.map((p) => husks.get(p.pid)!.pid), { dir });
    // Children first, so a parent never runs while a child it may wait for is still held.
    for (const p of [...img.processes].reverse()) husks.get(p.pid)!.release();
  } catch (err) {
    for (const h of [...husks.values()].reverse()) h.abort();
    throw err;
  }
  const result = {
    /** As the host sees it: for a container, the host pid of its init. */
    pid: husks.get(img.processes[0]!.pid)!.pid,
    processes: img.processes.length,
    threads: img.processes.reduce((a, p) => a + p.threads.length, 0),
    pagesBytes: img.processes.reduce((a, p) => a + p.pagesBytes, 0),
    totalMs: performance.now() - t0,
    memoryMs,
    ...(verify ? { verify } : {}),
  };
  if (chan.hasSubscribers) chan.publish({ kind: 'done', ...result });
  return result;
}
