// One agent's part of workload checkpoints on shared storage (docs/hpc.md): a workload it runs
// checkpointed into a new snapshot of its images directory (published atomically before the
// original ends), and a workload restored here from the current snapshot with its network
// namespace, cgroup and limits, then registered as this host's like any other.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import type { Image } from '../../shared/image-format.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type AgentRestoreRequest, type CheckpointReply, JobManifest, MANIFEST_JSON, NETNS_JSON, type RestoreReply, type WorkloadCheckpointRequest } from '../../shared/job-image.ts';
import { NetnsConfig } from '../../shared/netns.ts';
import { readSideFile } from '../../shared/records.ts';
import { Checkpoint, imageTotals } from '../engine/checkpoint.ts';
import { assertCompatible } from '../engine/image/compat.ts';
import { readImage, writeImage } from '../engine/image/image-io.ts';
import { readStat } from '../engine/process/procfs.ts';
import { restore as restoreTree } from '../engine/restore.ts';
import { NetworkHandoff, addressOf, type LandedNetns } from '../net/handoff.ts';
import type { WorkloadNetwork } from '../net/workload.ts';
import type { Workloads } from '../workloads.ts';
import { PAGE } from '../engine/memory/dirty/types.ts';
import { PageStore } from '../engine/memory/page-store.ts';
import { beginSnapshot, currentSnapshot, nextStore } from './image-store.ts';
import { LiveImage } from './live-image.ts';

/** A first round that wrote more than this is followed by a second before the freeze. */
const SECOND_ROUND_BYTES = 64 << 20;
/** A store may hold this much beyond twice its live pages before a checkpoint starts a new one. */
const COMPACT_SLACK_BYTES = 256 << 20;


export class WorkloadImages {
  readonly #network: NetworkHandoff;
  /** One checkpoint or restore per workload at a time. */
  readonly #busy = new Set<string>();
  /** Per workload: its memory on shared storage, tracked between checkpoints. */
  readonly #live = new Map<string, LiveImage>();

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
    const t0 = performance.now();
    const w = this.workloads.get(req.name);
    if (w.state !== 'running' || w.rootPid === null)
      throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" is ${w.state} on ${this.host}: only a running workload can be checkpointed`, { details: { workload: req.name, state: w.state } });
    // One workload's checkpoints per directory: another's current one is never replaced.
    const prev = currentSnapshot(req.images);
    const owner = prev ? readSideFile(path.join(prev.dir, MANIFEST_JSON), JobManifest)?.workload : undefined;
    if (prev && owner !== req.name)
      throw new FerryError(ErrorCode.InvalidRequest, `${req.images} holds ${owner ? `the checkpoint of "${owner}"` : 'an image of no workload'}: give "${req.name}" a directory of its own`, { details: { images: req.images, workload: owner ?? null } });
    const live = this.#liveImage(req.name, w.rootPid, req.images);
    const before = live.store.totalBytes;
    try {
      // While the workload runs: what it wrote since the last checkpoint (everything, the first
      // time), and once more when that was much, so that the freeze carries only the last delta.
      const first = await live.round();
      if (first.pagesWritten * PAGE > SECOND_ROUND_BYTES) await live.round();
      // On stable storage before the freeze: the snapshot's sync then carries only the last delta.
      live.store.sync();
    } catch (err) {
      this.workloads.letGo(req.name);
      throw err;
    }
    const netns = this.workloads.netnsOf(req.name);
    // Read while it runs (tens of milliseconds); the namespace is locked across the freeze so that
    // no peer's segment is acknowledged by a socket in repair mode.
    const netConfig = await this.#network.dump(netns);
    const snap = beginSnapshot(req.images);
    let c: Checkpoint;
    this.#network.lock(netns);
    try {
      c = Checkpoint.begin(w.rootPid);
    } catch (err) {
      this.#network.unlock(netns);
      snap.abandon();
      throw err;
    }
    let img: Image;
    let published = '';
    let frozenMs = 0;
    let thawed = false;
    try {
      c.collect();
      const last = await live.final(c, snap.dir);
      const manifest: JobManifest = {
        workload: req.name,
        command: w.command,
        limits: w.limits,
        requests: w.requests,
        host: this.host,
        seq: snap.seq,
        takenAt: new Date().toISOString(),
        address: w.address,
      };
      const write = () => {
        last.finish();
        img = c.image();
        img.stats = { ...img.stats, frozenMs, pagesBytes: LiveImage.pagesBytes(img.processes) };
        writeImage(snap.dir, img);
        writeFileSync(path.join(snap.dir, MANIFEST_JSON), JSON.stringify(manifest));
        if (netConfig) writeFileSync(path.join(snap.dir, NETNS_JSON), JSON.stringify(netConfig));
        live.store.sync();
        published = snap.publish(live.store.name);
        live.checkpoints++;
      };
      frozenMs = performance.now() - c.tree.frozenAt;
      if (req.leaveRunning) {
        // Every page is in the store: the job runs on while checksums are completed and the
        // snapshot is synced and published. Until then the previous snapshot stays current.
        c.release();
        thawed = true;
        this.#network.unlock(netns);
      }
      // Ending the job: the snapshot is complete and synced before the original may end.
      write();
    } catch (err) {
      if (!thawed) {
        c.release();
        this.#network.unlock(netns);
      }
      this.workloads.letGo(req.name);
      snap.abandon();
      throw err;
    }
    const written = live.store.totalBytes - before;
    if (!req.leaveRunning) {
      frozenMs = performance.now() - c.tree.frozenAt;
      this.workloads.letGo(req.name);
      c.kill();
      await this.#network.removeSource(netns);
      this.workloads.forget(req.name);
    }
    return {
      workload: req.name,
      host: this.host,
      images: req.images,
      snapshot: published,
      seq: snap.seq,
      ...imageTotals(img!),
      bytesWritten: written,
      incremental: live.checkpoints > 1,
      frozenMs,
      totalMs: performance.now() - t0,
      leftRunning: req.leaveRunning,
      command: w.command,
      address: w.address,
    };
  }

  /**
   * The workload's live image in this directory: the one earlier checkpoints kept (its tracker
   * still on the same tree), or a new store when there is none or most of the old one is pages
   * written over since (a full checkpoint then, and the old store goes at publish).
   */
  #liveImage(name: string, root: number, images: string): LiveImage {
    const cur = this.#live.get(name);
    if (cur && !cur.stopped && cur.root === root && cur.images === images && cur.store.totalBytes <= 2 * cur.liveBytes + COMPACT_SLACK_BYTES) return cur;
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
    const cur = currentSnapshot(req.images);
    if (!cur) throw new FerryError(ErrorCode.NotFound, `${req.images} holds no complete checkpoint`, { details: { images: req.images } });
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
