// One agent's part of workload checkpoints on shared storage (docs/hpc.md): a workload it runs
// checkpointed into a new snapshot of its images directory (published atomically before the
// original ends), and a workload restored here from the current snapshot with its network
// namespace, cgroup and limits, then registered as this host's like any other.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { z } from 'zod';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type AgentRestoreRequest, type CheckpointReply, JobManifest, MANIFEST_JSON, NETNS_JSON, type RestoreReply, type WorkloadCheckpointRequest } from '../../shared/job-image.ts';
import type { JobMemberReply, JobMemberStep } from '../../shared/job-group.ts';
import { NetnsConfig } from '../../shared/netns.ts';
import { readSideFile } from '../../shared/records.ts';
import { assertCompatible } from '../engine/image/compat.ts';
import { readImage } from '../engine/image/image-io.ts';
import { readStat } from '../engine/process/procfs.ts';
import { restore as restoreTree } from '../engine/restore.ts';
import { NetworkHandoff, addressOf, type LandedNetns } from '../net/handoff.ts';
import type { WorkloadNetwork } from '../net/workload.ts';
import type { Workloads } from '../workloads.ts';
import { PageStore } from '../engine/memory/page-store.ts';
import { currentSnapshot, nextStore, snapshotAt } from './image-store.ts';
import { LiveImage } from './live-image.ts';
import { CheckpointSession } from './checkpoint-session.ts';

/** How long a job member's checkpoint waits for its next step before it is abandoned (thawed). */
const HOLD_MS = 60_000;
/** A store may hold this much beyond twice its live pages before a checkpoint starts a new one. */
const COMPACT_SLACK_BYTES = 256 << 20;


export class WorkloadImages {
  readonly #network: NetworkHandoff;
  /** One checkpoint or restore per workload at a time. */
  readonly #busy = new Set<string>();
  /** Per workload: its memory on shared storage, tracked between checkpoints. */
  readonly #live = new Map<string, LiveImage>();
  /** Job members' checkpoints between their steps, by workload and job token. */
  readonly #held = new Map<string, { session: CheckpointSession; timer: NodeJS.Timeout }>();

  constructor(
    private readonly host: string,
    private readonly workloads: Workloads,
    network?: WorkloadNetwork,
  ) {
    this.#network = new NetworkHandoff(network);
  }

  async #exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (this.#busy.has(name)) throw new FerryError(ErrorCode.Conflict, `a checkpoint or restore of "${name}" is already running on ${this.host}`, { retryable: true });
    this.#busy.add(name);
    try {
      return await fn();
    } finally {
      this.#busy.delete(name);
    }
  }

  checkpoint(req: WorkloadCheckpointRequest): Promise<CheckpointReply> {
    return this.#exclusive(req.name, () => this.#checkpoint(req));
  }

  async #checkpoint(req: WorkloadCheckpointRequest): Promise<CheckpointReply> {
    const session = await this.#freeze(req);
    try {
      await session.dump();
      return await session.commit();
    } catch (err) {
      session.abort();
      throw err;
    }
  }

  /** A workload of this host frozen for a checkpoint into req.images (refused before anything is touched). */
  async #freeze(req: WorkloadCheckpointRequest): Promise<CheckpointSession> {
    const w = this.workloads.get(req.name);
    if (w.state !== 'running' || w.rootPid === null)
      throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" is ${w.state} on ${this.host}: only a running workload can be checkpointed`, { details: { workload: req.name, state: w.state } });
    // One workload's checkpoints per directory: another's current one is never replaced.
    const prev = currentSnapshot(req.images);
    const owner = prev ? readSideFile(path.join(prev.dir, MANIFEST_JSON), JobManifest)?.workload : undefined;
    if (prev && owner !== req.name)
      throw new FerryError(ErrorCode.InvalidRequest, `${req.images} holds ${owner ? `the checkpoint of "${owner}"` : 'an image of no workload'}: give "${req.name}" a directory of its own`, { details: { images: req.images, workload: owner ?? null } });
    const live = this.#liveImage(req.name, w.rootPid, req.images);
    return CheckpointSession.freeze({ host: this.host, workloads: this.workloads, network: this.#network }, req, { ...w, rootPid: w.rootPid }, live);
  }

  /**
   * A job member's checkpoint, step by step (coordinator/job-checkpoints.ts): every member is
   * frozen before any is dumped, and none is committed before every one is staged. A member left
   * without its next step for HOLD_MS is thawed and its checkpoint abandoned: no path leaves it frozen.
   */
  async memberStep(req: JobMemberStep): Promise<JobMemberReply> {
    const key = `${req.name}\0${req.token}`;
    if (req.step === 'freeze') {
      if (this.#busy.has(req.name)) throw new FerryError(ErrorCode.Conflict, `a checkpoint or restore of "${req.name}" is already running on ${this.host}`, { retryable: true });
      this.#busy.add(req.name);
      let session: CheckpointSession;
      try {
        session = await this.#freeze({ name: req.name, images: req.images, leaveRunning: req.leaveRunning });
      } catch (err) {
        this.#busy.delete(req.name);
        throw err;
      }
      this.#held.set(key, { session, timer: this.#holdTimer(key) });
      return { name: req.name, step: req.step, frozen: true, seq: null, reply: null };
    }
    const held = this.#held.get(key);
    if (!held) throw new FerryError(ErrorCode.NotFound, `no checkpoint of "${req.name}" held on ${this.host} for this job step (it was abandoned after ${HOLD_MS / 1000} s without its next step, or never frozen)`, { details: { workload: req.name } });
    // No deadline while a step runs (a large dump may take long); the next one starts after it.
    clearTimeout(held.timer);
    try {
      if (req.step === 'dump') {
        const seq = await held.session.dump();
        held.timer = this.#holdTimer(key);
        return { name: req.name, step: req.step, frozen: held.session.frozen, seq, reply: null };
      }
      if (req.step === 'commit') {
        const reply = await held.session.commit();
        this.#dropHeld(key);
        return { name: req.name, step: req.step, frozen: false, seq: reply.seq, reply };
      }
      this.#dropHeld(key);
      return { name: req.name, step: req.step, frozen: false, seq: null, reply: null };
    } catch (err) {
      this.#dropHeld(key);
      throw err;
    }
  }

  #holdTimer(key: string): NodeJS.Timeout {
    const timer = setTimeout(() => this.#dropHeld(key), HOLD_MS);
    timer.unref();
    return timer;
  }

  /** Ends a held member checkpoint: aborted (thawed, nothing published) unless it was committed. */
  #dropHeld(key: string): void {
    const held = this.#held.get(key);
    if (!held) return;
    this.#held.delete(key);
    clearTimeout(held.timer);
    held.session.abort();
    this.#busy.delete(held.session.req.name);
  }

  /**
   * The workload's live image in this directory: the one earlier checkpoints kept (its tracker
   * still on the same tree), its pages moved to a new store when most of the old one is pages
   * written over since (the old store goes at publish); or a new one, whose first checkpoint is full.
   */
  #liveImage(name: string, root: number, images: string): LiveImage {
    const cur = this.#live.get(name);
    if (cur && !cur.stopped && cur.root === root && cur.images === images) {
      if (cur.store.totalBytes <= 2 * cur.liveBytes + COMPACT_SLACK_BYTES) return cur;
      const store = nextStore(images);
      cur.rebase(new PageStore(path.join(images, store), store));
      return cur;
    }
    this.workloads.letGo(name);
    const store = nextStore(images);
    const live = LiveImage.start(root, images, new PageStore(path.join(images, store), store));
    this.#live.set(name, live);
    this.workloads.hold(name, () => {
      live.stop();
      if (this.#live.get(name) === live) this.#live.delete(name);
    });
    return live;
  }

  restore(req: z.infer<typeof AgentRestoreRequest>): Promise<RestoreReply> {
    return this.#exclusive(req.name, () => this.#restore(req));
  }

  async #restore(req: z.infer<typeof AgentRestoreRequest>): Promise<RestoreReply> {
    const t0 = performance.now();
    if (this.workloads.runsHere(req.name)) throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" already runs on ${this.host}`, { details: { workload: req.name, host: this.host } });
    const cur = req.seq === undefined ? currentSnapshot(req.images) : snapshotAt(req.images, req.seq);
    if (!cur) throw new FerryError(ErrorCode.NotFound, `${req.images} holds no complete checkpoint${req.seq === undefined ? '' : ` ${req.seq}`}`, { details: { images: req.images } });
    const image = readImage(cur.dir);
    const manifest = readSideFile(path.join(cur.dir, MANIFEST_JSON), JobManifest);
    if (!manifest) throw new FerryError(ErrorCode.BadImage, `${cur.dir} has no ${MANIFEST_JSON}: not a workload's checkpoint (a pid's image restores with \`ferry restore --images DIR\` on its host)`, { details: { images: req.images } });
    if (manifest.workload !== req.name)
      throw new FerryError(ErrorCode.InvalidRequest, `${req.images} holds a checkpoint of "${manifest.workload}", not of "${req.name}"`, { details: { images: req.images, workload: manifest.workload } });
    assertCompatible(image.machine);
    const netConfig = readSideFile(path.join(cur.dir, NETNS_JSON), NetnsConfig);
    const address = netConfig ? (addressOf(netConfig) ?? null) : null;
    if (address && req.takenAddresses.includes(address))
      throw new FerryError(ErrorCode.InvalidRequest, `the checkpoint's address ${address} is taken by another workload now: "${req.name}" cannot come back with it`, { details: { address } });
    const cgroup = this.workloads.cgroupFor(req.name);
    const cg = this.workloads.prepareCgroup(req.name, manifest.limits);
    this.workloads.ensureLog(req.name);
    let net: LandedNetns | null = null;
    let pid: number;
    try {
      if (netConfig) {
        const landing = this.#network.landingName(req.name, `r-${randomBytes(4).toString('hex')}`);
        if (!landing) throw new FerryError(ErrorCode.Incompatible, `${this.host} has no workload network configured: it cannot take a workload with a network namespace of its own`);
        net = await this.#network.land(netConfig, landing);
      }
      const landed = net;
      ({ pid } = restoreTree(cur.dir, {
        cgroupProcs: cg.procsFiles(),
        ...(cgroup ? { cgroup } : {}),
        ...(landed ? { netns: landed.handle.path, beforeRun: () => this.#network.goLive(landed) } : {}),
      }));
    } catch (err) {
      await this.#network.discard(net, null);
      if (!this.workloads.runsHere(req.name)) cg.remove();
      throw err;
    }
    // A container's init is the child of the process that holds its namespaces.
    const shimPid = image.container ? Number(readStat(pid).f(4)) : null;
    this.workloads.adopt({
      name: req.name,
      rootPid: pid,
      shimPid,
      command: manifest.command,
      limits: manifest.limits,
      requests: manifest.requests,
      ...(net ? { netns: net.handle.path } : {}),
      ...(address ? { address } : {}),
    });
    return { workload: req.name, host: this.host, images: req.images, snapshot: cur.dir, seq: cur.seq, pid, address, processes: image.processes.length, totalMs: performance.now() - t0 };
  }
}
