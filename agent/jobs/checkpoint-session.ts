// One workload's checkpoint on this agent, in the steps a job's barrier needs (docs/hpc.md):
// freeze (rounds while it runs, then frozen and collected, its namespace locked), dump (the last
// delta and the image, staged beside the current snapshot; thawed here when it runs on), then
// commit (the snapshot becomes current; a workload that ends is ended only now) or abort
// (thawed, nothing published). A single workload's checkpoint runs the steps back to back.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { Image } from '../../shared/image-format.ts';
import { type CheckpointReply, type JobManifest, MANIFEST_JSON, NETNS_JSON, type WorkloadCheckpointRequest } from '../../shared/job-image.ts';
import type { NetnsConfig } from '../../shared/netns.ts';
import { Checkpoint, imageTotals } from '../engine/checkpoint.ts';
import { writeImage } from '../engine/image/image-io.ts';
import { PAGE } from '../engine/memory/dirty/types.ts';
import type { NetworkHandoff } from '../net/handoff.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import type { Workloads } from '../workloads.ts';
import { type PendingSnapshot, beginSnapshot } from './image-store.ts';
import type { LiveImage } from './live-image.ts';

/** A first round that wrote more than this is followed by a second before the freeze. */
const SECOND_ROUND_BYTES = 64 << 20;
/** A workload whose rounds do not converge goes straight to the freeze this many times, then rounds are tried again. */
const RETRY_ROUNDS = 4;

export interface SessionContext {
  host: string;
  workloads: Workloads;
  network: NetworkHandoff;
}

export class CheckpointSession {
  #phase: 'frozen' | 'staged' | 'done' = 'frozen';
  #thawed = false;
  #img: Image | null = null;
  #frozenMs = 0;
  #written = 0;

  private constructor(
    private readonly ctx: SessionContext,
    readonly req: WorkloadCheckpointRequest,
    private readonly w: WorkloadInfo & { rootPid: number },
    private readonly live: LiveImage,
    private readonly c: Checkpoint,
    private readonly snap: PendingSnapshot,
    private readonly netns: string | null,
    private readonly netConfig: NetnsConfig | null,
    private readonly before: number,
    private readonly t0: number,
  ) {}

  /** Rounds while the workload runs, then frozen and collected. On failure it runs on, untouched. */
  static async freeze(ctx: SessionContext, req: WorkloadCheckpointRequest, w: WorkloadInfo & { rootPid: number }, live: LiveImage): Promise<CheckpointSession> {
    const t0 = performance.now();
    const before = live.store.totalBytes;
    try {
      // While the workload runs: what it wrote since the last checkpoint (everything, the first
      // time), and once more when that was much, so that the freeze carries only the last delta.
      const skip = live.checkpoints > 0 && !live.converging && live.skippedRounds < RETRY_ROUNDS;
      let last = 0;
      if (skip) live.skippedRounds++;
      else {
        live.skippedRounds = 0;
        const first = await live.round();
        last = first.pagesWritten * PAGE;
        if (last > SECOND_ROUND_BYTES) {
          const second = await live.round();
          live.converging = second.pagesWritten < first.pagesWritten / 2;
          last = second.pagesWritten * PAGE;
        }
      }
      live.prepareFreeze(skip ? live.liveBytes : last);
      // On stable storage before the freeze: the snapshot's sync then carries only the last delta.
      live.store.sync();
    } catch (err) {
      ctx.workloads.letGo(req.name);
      throw err;
    }
    const netns = ctx.workloads.netnsOf(req.name);
    // Read while it runs (tens of milliseconds); the namespace is locked across the freeze so that
    // no peer's segment is acknowledged by a socket in repair mode.
    const netConfig = await ctx.network.dump(netns);
    const snap = beginSnapshot(req.images);
    ctx.network.lock(netns);
    let c: Checkpoint;
    try {
      c = Checkpoint.begin(w.rootPid, { ownCgroup: w.cgroup ?? null });
    } catch (err) {
      ctx.network.unlock(netns);
      snap.abandon();
      throw err;
    }
    try {
      c.collect();
    } catch (err) {
      c.release();
      ctx.network.unlock(netns);
      snap.abandon();
      throw err;
    }
    return new CheckpointSession(ctx, req, w, live, c, snap, netns, netConfig, before, t0);
  }

  get frozen(): boolean {
    return !this.#thawed && this.#phase !== 'done';
  }

  /** The last delta and the image, staged; a workload that runs on is thawed once its pages are all in the store. */
  async dump(): Promise<number> {
    if (this.#phase !== 'frozen') throw new FerryError(ErrorCode.Internal, `checkpoint of "${this.req.name}" is ${this.#phase}, not frozen`);
    const { c, live, snap, req, w } = this;
    const last = await live.final(c, snap.dir);
    this.#frozenMs = performance.now() - c.tree.frozenAt;
    if (req.leaveRunning) this.#thaw();
    // Checksums of runs cut by later writes, then the image; the job runs on meanwhile.
    last.finish();
    const img = c.image();
    img.stats = { ...img.stats, frozenMs: this.#frozenMs, pagesBytes: imageTotalsFromRuns(img) };
    writeImage(snap.dir, img);
    const manifest: JobManifest = {
      workload: req.name,
      command: w.command,
      limits: w.limits,
      requests: w.requests,
      host: this.ctx.host,
      seq: snap.seq,
      takenAt: new Date().toISOString(),
      address: w.address,
    };
    writeFileSync(path.join(snap.dir, MANIFEST_JSON), JSON.stringify(manifest));
    if (this.netConfig) writeFileSync(path.join(snap.dir, NETNS_JSON), JSON.stringify(this.netConfig));
    live.store.sync();
    snap.stage();
    this.#img = img;
    this.#written = live.store.totalBytes - this.before;
    this.#phase = 'staged';
    return snap.seq;
  }

  /** The staged snapshot becomes current; a workload that does not run on is ended now. */
  async commit(): Promise<CheckpointReply> {
    if (this.#phase !== 'staged') throw new FerryError(ErrorCode.Internal, `checkpoint of "${this.req.name}" is ${this.#phase}, not staged`);
    const { req, w, live, c } = this;
    const published = this.snap.commit(live.store.name);
    live.checkpoints++;
    if (!req.leaveRunning) {
      this.#frozenMs = performance.now() - c.tree.frozenAt;
      this.ctx.workloads.letGo(req.name);
      c.kill();
      await this.ctx.network.removeSource(this.netns);
      this.ctx.workloads.forget(req.name);
    }
    this.#phase = 'done';
    return {
      workload: req.name,
      host: this.ctx.host,
      images: req.images,
      snapshot: published,
      seq: this.snap.seq,
      ...imageTotals(this.#img!),
      bytesWritten: this.#written,
      incremental: live.checkpoints > 1,
      frozenMs: this.#frozenMs,
      totalMs: performance.now() - this.t0,
      leftRunning: req.leaveRunning,
      command: w.command,
      address: w.address,
    };
  }

  /** Nothing is published; the workload runs on as before. Never throws. */
  abort(): void {
    if (this.#phase === 'done') return;
    this.#thaw();
    this.ctx.workloads.letGo(this.req.name);
    try {
      this.snap.abandon();
    } catch {
      // a leftover the next checkpoint removes
    }
    this.#phase = 'done';
  }

  #thaw(): void {
    if (this.#thawed) return;
    this.#thawed = true;
    this.c.release();
    this.ctx.network.unlock(this.netns);
  }
}

const imageTotalsFromRuns = (img: Image): number => img.processes.reduce((a, p) => a + p.vmas.reduce((b, v) => b + v.runs.reduce((x, r) => x + r.pages * PAGE, 0), 0), 0);
