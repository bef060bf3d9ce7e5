// The destination builds the workload's tree from the image (or finishes the one built during
// pre-copy), holds it stopped for the commit, and verifies it against the image: a difference
// fails the restore step, so the migration rolls back before its commit point.
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { NetnsConfig } from '../../shared/netns.ts';
import type { ResourceLimits } from '../../shared/resources.ts';
import type { VerifyReport } from '../../shared/verify.ts';
import { freezeCgroup } from '../engine/process/freeze.ts';
import { readImage } from '../engine/image/image-io.ts';
import { buildProcess, createHusks, finishThreads, waitPidFree } from '../engine/restore.ts';
import { thawHeldTree } from '../engine/process/hold.ts';
import type { Husk } from '../engine/process/husk.ts';
import { assertCompatible } from '../engine/image/compat.ts';
import { verifyTree } from '../engine/verify/index.ts';
import { corruptIfArmed } from '../engine/verify/corrupt.ts';
import { cgroup2Root } from '../cgroups/root.ts';
import type { Workloads } from '../workloads.ts';
import type { LandedNetns, NetworkHandoff } from '../net/handoff.ts';
import { type PrecopyDestination, closeTargets } from './precopy-destination.ts';
import { PostcopyDestination, type PostcopyTarget } from './postcopy-destination.ts';
import type { Span } from '../engine/memory/dirty/types.ts';
import type { LocalMigration, MigrationRecords } from './records.ts';
import { readNetnsFile, readWorkloadFile } from './side-files.ts';
import { type BuildResult, type Built, type DestinationSession, rootHusk } from './destination-session.ts';
import { LeaseGuard, leaseViewReadAhead } from '../engine/files/lock-sharing.ts';

export class HeldTreeBuilder {
  constructor(
    private readonly host: string,
    private readonly records: MigrationRecords,
    private readonly workloads: Workloads,
    private readonly network: NetworkHandoff,
  ) {}

  /** The limits the workload had when its source froze it (an update during pre-copy is taken over), else those admitted. */
  finalLimits(m: LocalMigration): ResourceLimits {
    return readWorkloadFile(m.imageDir)?.limits ?? m.resources?.limits ?? {};
  }

  /** The held tree, built once, and its verification (unless the migration turned it off). */
  async buildVerified(id: string, sess: DestinationSession, verify: boolean): Promise<BuildResult> {
    // The landing checks of a live migration ran while pages came: their figures go in the report
    // (read before the build, which ends the warm session).
    const warmLanding = sess.warm?.landing?.rounds ?? null;
    const pid = await this.build(id, sess);
    if (!verify) return { pid };
    return { pid, verify: this.#verify(id, sess, warmLanding) };
  }

  /** Compares the held tree with its image; on a difference the tree is torn down and stays failed. */
  #verify(id: string, sess: DestinationSession, landing: readonly { pages: number; ms: number }[] | null): VerifyReport {
    if (sess.verifyFailed) throw sess.verifyFailed;
    const b = sess.held;
    if (!b) throw new FerryError(ErrorCode.Internal, `${id}: no restored tree to verify`);
    const pids = b.image.processes.map((p) => b.husks.get(p.pid)!.pid);
    try {
      // Not held (no cgroup here): the husks are traced and still have their scratch page.
      const scratch = new Map([...b.husks.values()].map((h) => [h.pid, [h.scratchSpan]]));
      const m = this.records.get(id)!;
      const cg = this.workloads.cgroupOf(m.workload);
      const cgroup = { limits: this.finalLimits(m), read: () => cg.read(), notMemberOf: (pid: number) => cg.notMemberOf(pid) };
      return verifyTree(b.image, pids, { dir: m.imageDir, cgroup, ...(landing ? { landing } : {}), ...(b.frozen ? {} : { ferryOwn: (pid) => scratch.get(pid) ?? [] }) });
    } catch (err) {
      const e = FerryError.from(err);
      sess.verifyFailed = e;
      throw e;
    }
  }

  /** Builds the held tree once (in its rebuilt network namespace); returns the host pid of its root. */
  async build(id: string, sess: DestinationSession): Promise<number> {
    if (sess.held) return rootHusk(sess.held).pid;
    if (sess.warmFailed) throw sess.warmFailed;
    const m = this.records.get(id)!;
    // A discard got here first: nothing of the migration may be built any more.
    if (m.fenced) throw new FerryError(ErrorCode.InvalidRequest, `migration ${id} was rolled back on ${this.host}: nothing is built`);
    const leases = new LeaseGuard(leaseViewReadAhead());
    const image = readImage(m.imageDir);
    assertCompatible(image.machine);
    // The tree joins this host's cgroup for the workload, not the path it had on its source.
    const cgroup = this.workloads.cgroupFor(m.workload);
    if (cgroup) for (const p of image.processes) p.cgroup = cgroup;
    // The limits the source had at the freeze; verification (agent/engine/verify/cgroup.ts) reads them back before the commit.
    const cg = this.workloads.prepareCgroup(m.workload, this.finalLimits(m));
    this.workloads.ensureLog(m.workload);
    const netConfig = readNetnsFile(m.imageDir);
    if (sess.warm) return this.#buildWarm(id, sess, sess.warm, image, m.imageDir, netConfig, leases);
    if (image.processes.some((p) => p.vmas.some((v) => v.precopied)))
      throw new FerryError(ErrorCode.Unavailable, `${id}: the memory pre-copied into this host's husks was lost (agent restarted): roll back`);
    if (!image.container) for (const p of image.processes) waitPidFree(p.pid);
    let net: LandedNetns | null = null;
    if (netConfig) {
      m.landing = this.network.landingName(m.workload, id);
      this.records.save(m);
      if (!m.landing) throw new FerryError(ErrorCode.Incompatible, `${this.host} has no workload network configured: it cannot take a workload with a network namespace of its own`);
      net = await this.network.land(netConfig, m.landing);
    }
    let husks: Map<number, Husk> | null = null;
    try {
      husks = createHusks(image, m.imageDir, { cgroupProcs: cg.procsFiles(), ...(net ? { netns: net.handle.path } : {}) });
      for (const p of image.processes) buildProcess(husks.get(p.pid)!, p, m.imageDir, leases);
      corruptIfArmed(image, husks);
    } catch (err) {
      for (const h of [...(husks?.values() ?? [])].reverse()) h.abort();
      await this.network.discard(net, null);
      throw err;
    }
    const built: Built = { husks, image, net };
    this.#hold(id, built);
    sess.held = built;
    return rootHusk(built).pid;
  }

  /**
   * Holds a built tree for the commit so that it outlives this agent: registers in, its cgroup
   * frozen, on record, then untraced. Without a cgroup of its own here it stays in ptrace-stop
   * (and dies with the agent).
   */
  #hold(id: string, b: Built, lastStep?: () => void): void {
    const m = this.records.get(id)!;
    const rel = this.workloads.cgroupFor(m.workload);
    const root = cgroup2Root();
    if (!rel || !root) {
      // Held in ptrace-stop instead; its threads get their state now all the same, so that
      // verification compares the tree as it will run (resume then only lets it go).
      for (const p of b.image.processes) finishThreads(b.husks.get(p.pid)!, p);
      b.threadsDone = true;
      return;
    }
    const dir = path.join(root, rel);
    try {
      // Before the threads' state: their scratch page goes with it, and what the kernel writes
      // then (rseq's registration) lands in pages the source sent frozen (postcopy-split.ts).
      lastStep?.();
      for (const p of b.image.processes) finishThreads(b.husks.get(p.pid)!, p);
      freezeCgroup(dir);
    } catch (err) {
      thawHeldTree({ pids: [], cgroup: dir });
      for (const h of [...b.husks.values()].reverse()) h.abort();
      throw err;
    }
    m.heldTree = { pids: b.image.processes.map((p) => b.husks.get(p.pid)!.pid), cgroup: dir };
    this.records.save(m);
    for (const p of [...b.image.processes].reverse()) b.husks.get(p.pid)!.release();
    b.frozen = true;
  }

  /**
   * Post-copy's service for a tree that lacks pages: on record first (a restarted agent must not
   * resume it), and only with a cgroup of the workload's own here, which is what is killed if
   * post-copy cannot finish.
   */
  #postcopy(id: string, targets: PostcopyTarget[], origin: Map<number, Span[]>): PostcopyDestination {
    const m = this.records.get(id)!;
    const rel = this.workloads.cgroupFor(m.workload);
    const root = cgroup2Root();
    if (!rel || !root) throw new FerryError(ErrorCode.Unsupported, `${id}: post-copy needs the workload's own cgroup on ${this.host} (to end it if its source is lost), and there is none`);
    m.postcopy = true;
    this.records.save(m);
    return new PostcopyDestination({ targets, origin, migrationId: id, cgroupDir: path.join(root, rel) });
  }

  /** Warm restore: the husks built during pre-copy get what only the image carries. */
  #buildWarm(id: string, sess: DestinationSession, warm: PrecopyDestination, image: ReturnType<typeof readImage>, dir: string, netConfig: NetnsConfig | null, leases: LeaseGuard): number {
    let husks: Map<number, Husk>;
    try {
      if (JSON.stringify(netConfig) !== JSON.stringify(warm.net?.config ?? null))
        throw new FerryError(ErrorCode.Unsupported, `${id}: the workload's network configuration changed during pre-copy; the namespace rebuilt here no longer matches`);
      husks = warm.finalize(image, dir, leases);
      corruptIfArmed(image, husks);
    } catch (err) {
      void warm.discard();
      delete sess.warm;
      sess.warmFailed = FerryError.from(err);
      throw sess.warmFailed;
    }
    const targets = warm.postcopyTargets;
    const origin = warm.outstandingRuns;
    const arm = warm.armPostcopy;
    warm.detach();
    delete sess.warm;
    const built: Built = { husks, image, net: warm.net };
    try {
      if (targets.length > 0) built.postcopy = this.#postcopy(id, targets, origin);
    } catch (err) {
      closeTargets(targets);
      for (const h of [...husks.values()].reverse()) h.abort();
      void this.network.discard(warm.net, null);
      sess.warmFailed = FerryError.from(err);
      throw sess.warmFailed;
    }
    try {
      this.#hold(id, built, targets.length > 0 ? arm : undefined);
    } catch (err) {
      built.postcopy?.discard();
      void this.network.discard(warm.net, null);
      // The pre-copied memory went with the husks: a retried build must not start cold.
      sess.warmFailed = FerryError.from(err);
      throw sess.warmFailed;
    }
    sess.held = built;
    return rootHusk(built).pid;
  }
}
