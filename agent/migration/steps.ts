// One agent's part of each migration phase. Every step is idempotent by its key (a replay
// returns the first result) and refused once the migration was rolled back here (fenced), so a
// late or duplicated request can never undo a decision. The workload is frozen by the engine;
// a restarted agent can still thaw or end it from the pids on record.
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { faultArmed } from '../../shared/fault.ts';
import { IMAGE_JSON } from '../../shared/image-format.ts';
import type { HeldLock, StepBase } from '../../shared/migration.ts';
import type { ResourceLimits, ResourceRequests } from '../../shared/resources.ts';
import { Checkpoint, preflightTree } from '../engine/checkpoint.ts';
import { freezeCgroup, killHeld, releaseHeld } from '../engine/freeze.ts';
import { listTasks, readStat } from '../engine/procfs.ts';
import { prepareImageDir, readImage, writeImage } from '../engine/image-io.ts';
import { buildProcess, createHusks, finishProcess, finishThreads, waitPidFree } from '../engine/restore.ts';
import { activateHeldConnections, killHeldTree, thawHeldTree } from '../engine/hold.ts';
import { cgroup2Root } from '../probes.ts';
import type { Husk } from '../engine/husk.ts';
import { assertCompatible } from '../engine/compat.ts';
import { heldLocks, refuseSharedLocks } from '../engine/lock-sharing.ts';
import { connectStream, type StreamAuth, type StreamEndpoint } from '../transfer/stream.ts';
import { type ExpectedStream, StreamServer } from '../transfer/stream-server.ts';
import { noIdentity, type StreamCredentials } from '../transfer/auth.ts';
import { NetnsConfig } from '../../shared/netns.ts';
import { WorkloadCommandFile } from '../../shared/records.ts';
import type { z } from 'zod';
import { leaveRepairAll } from '../engine/sockets.ts';
import type { WorkloadNetwork } from '../net/workload.ts';
import type { Workloads } from '../workloads.ts';
import { NetworkHandoff, addressOf, type LandedNetns } from './network-handoff.ts';
import { receiveImageDir, sendImageDir, type TransferStats } from './image-transfer.ts';
import { MigrationRecords, type LocalMigration } from './records.ts';
import type { MethodRequest } from '../engine/dirty/choose.ts';
import { PrecopySource, type RoundReport } from './precopy-source.ts';
import { PrecopyDestination } from './precopy-destination.ts';
import { costModel } from './precopy-costs.ts';
import { unthrottle } from './throttle.ts';
import { verifyTree } from '../engine/verify/index.ts';
import { readSideFile } from '../jobs/workload-images.ts';
import { corruptIfArmed } from '../engine/verify/corrupt.ts';
import type { VerifyReport } from '../../shared/verify.ts';

/** What a rollback step needs: the coordinator sends a whole StepBase, this agent's own reconciler only these. */
export type RollbackStep = Pick<StepBase, 'migrationId' | 'workload' | 'peer'>;

/** Beside the image: the workload's registry entry as the source knew it, and its network namespace. */
const WORKLOAD_FILE = 'workload.json';
const NETNS_FILE = 'netns.json';

export class MigrationSteps {
  readonly records: MigrationRecords;
  /** Source: the live checkpoint handle of a frozen workload (lost if the agent restarts). */
  readonly #checkpoints = new Map<string, Checkpoint>();
  /** Destination: the image arriving over the data stream. */
  readonly #receiving = new Map<string, Promise<TransferStats>>();
  /** Destination: the restored tree, stopped, waiting for the commit, with its network namespace. */
  readonly #held = new Map<string, Built>();
  /** Destination: the data stream endpoint handed out for each migration. */
  readonly #endpoints = new Map<string, StreamEndpoint>();
  /** Destination: streams registered at the listener and not yet connected. */
  readonly #expected = new Map<string, ExpectedStream>();
  /** Destination: live migrations' trees being built during pre-copy (warm restore). */
  readonly #warm = new Map<string, PrecopyDestination>();
  /** Destination: a tree that failed verification stays failed (a replayed restore must not commit it). */
  readonly #verifyFailed = new Map<string, FerryError>();

  /** Source: live migrations' pre-copy sessions (stream, tracker), lost if the agent restarts. */
  readonly #sessions = new Map<string, PrecopySource>();
  /** Source: how long the freeze and the state dump took, per migration, to learn the costs from. */
  readonly #frozeMs = new Map<string, { freezeMs: number; collectMs: number }>();
  /** Destination: discards running, by migration (the coordinator's and this agent's own, see reconcile.ts). */
  readonly #discarding = new Map<string, Promise<{ done: true }>>();
  /** Steps still running, by idempotency key: a duplicate request joins the first. */
  readonly #running = new Map<string, Promise<unknown>>();

  readonly #network: NetworkHandoff;
  /** Destination: this agent's one stream listener, opened on the first migration it receives. */
  #server: Promise<StreamServer> | null = null;

  constructor(
    private readonly host: string,
    private readonly address: string,
    private readonly workloads: Workloads,
    stateDir: string,
    network?: WorkloadNetwork,
    /** Dirty tracking for live migration: auto (uffd-wp where it works, else hashing), or one forced. */
    private readonly tracking: MethodRequest = 'auto',
    /** This agent's identity and stream settings; null (no tls configured): it takes no part in migrations. */
    private readonly stream: DataStreamSettings | null = null,
  ) {
    this.records = new MigrationRecords(stateDir);
    this.#network = new NetworkHandoff(network);
  }

  /** The local record of a migration, created on its first step; `rollingBack` lets thaw/discard repeat. */
  #record(s: RollbackStep, role: LocalMigration['role'], rollingBack = false): LocalMigration {
    const existing = this.records.get(s.migrationId);
    if (existing) {
      if (existing.fenced && !rollingBack) throw new FerryError(ErrorCode.InvalidRequest, `migration ${s.migrationId} was rolled back on ${this.host}: step refused`);
      if (existing.role !== role) throw new FerryError(ErrorCode.InvalidRequest, `${this.host} is the ${existing.role} of ${s.migrationId}, not its ${role}`);
      return existing;
    }
    const m: LocalMigration = {
      id: s.migrationId,
      role,
      workload: s.workload,
      peer: s.peer,
      fenced: false,
      done: {},
      held: null,
      imageDir: this.records.imageDir(s.migrationId),
      restoredPid: null,
      workloadCommand: null,
    };
    this.records.save(m);
    return m;
  }

  /** Runs `fn` once per idempotency key; a replay returns the recorded result, a duplicate joins the running one. */
  async #once<T>(s: StepBase, role: LocalMigration['role'], fn: (m: LocalMigration) => Promise<T> | T): Promise<T> {
    const m = this.#record(s, role);
    if (s.idempotencyKey in m.done) return m.done[s.idempotencyKey] as T;
    const running = this.#running.get(s.idempotencyKey);
    if (running) return running as Promise<T>;
    const p = (async () => {
      const before = JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
      const result = await fn(m);
      // Merged into the record as it is now: other code may have put fields on record meanwhile.
      const now = (this.records.get(m.id) ?? m) as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(m)) if (JSON.stringify(v) !== JSON.stringify(before[k])) now[k] = v;
      const merged = now as unknown as LocalMigration;
      merged.done[s.idempotencyKey] = result;
      this.records.save(merged);
      return result;
    })();
    this.#running.set(s.idempotencyKey, p);
    try {
      return await p;
    } finally {
      this.#running.delete(s.idempotencyKey);
    }
  }

  #rootPid(name: string): number {
    const w = this.workloads.get(name);
    if (w.state === 'exited' || w.rootPid === null) throw new FerryError(ErrorCode.NotFound, `workload "${name}" is not running on ${this.host}`);
    return w.rootPid;
  }

  /** How this agent opens the stream of a migration it sends; refused without an identity. */
  #streamAuth(s: StepBase): StreamAuth {
    if (!this.stream) throw noIdentity(this.host);
    return { migrationId: s.migrationId, peer: s.peer, credentials: this.stream.credentials, encrypt: this.stream.encrypt, ...(s.bandwidthBps ? { rateBps: s.bandwidthBps } : {}) };
  }

  /** The listener, opened once; a failed open is tried again by the next migration. */
  #listener(): Promise<StreamServer> {
    const st = this.stream;
    if (!st) return Promise.reject(noIdentity(this.host));
    this.#server ??= StreamServer.open({ address: this.address, port: st.port, credentials: st.credentials, encrypt: st.encrypt }).catch((err: unknown) => {
      this.#server = null;
      throw err;
    });
    return this.#server;
  }

  // --- source ---------------------------------------------------------------------------------

  preflight(s: StepBase) {
    // Not recorded: checking twice is harmless, and nothing here changes the workload.
    // Before anything is frozen: without an identity this agent cannot send the workload anywhere.
    if (!this.stream) throw noIdentity(this.host);
    const { pids } = preflightTree(this.#rootPid(s.workload), { migration: true });
    const w = this.workloads.get(s.workload);
    const threads = (pid: number) => {
      try {
        return listTasks(pid).length;
      } catch {
        return 0; // a short-lived child exited meanwhile
      }
    };
    return {
      workloadBytes: w.memoryBytes,
      processes: pids.length,
      threads: pids.reduce((n, p) => n + threads(p), 0),
      limits: w.limits,
      requests: w.requests,
      // The destination checks these against what it sees (shared storage) before anything is frozen.
      locks: heldLocks(pids),
    };
  }

  /**
   * One pre-copy round of a live migration. Round 1 opens the session (the stream to the
   * destination's endpoint, the tracker); later rounds reuse it. A restarted agent has lost it:
   * the round fails and the migration rolls back.
   */
  precopy(s: StepBase & { round: number; throttle: boolean; endpoint?: StreamEndpoint }): Promise<RoundReport> {
    return this.#once(s, 'source', async (m) => {
      let session = this.#sessions.get(s.migrationId);
      if (!session && s.round === 1 && !m.precopy) {
        if (!s.endpoint) throw new FerryError(ErrorCode.InvalidRequest, `${s.migrationId}: pre-copy round 1 needs the destination's endpoint`);
        const root = this.#rootPid(s.workload);
        m.precopy = true;
        m.netns = this.workloads.netnsOf(s.workload);
        this.records.save(m);
        const netConfig = await this.#network.dump(m.netns);
        session = await PrecopySource.open(root, {
          stream: this.#streamAuth(s),
          endpoint: s.endpoint,
          method: this.tracking,
          netConfig,
          dumpNetns: () => this.#network.dump(m.netns ?? null),
          cgroupDir: this.workloads.get(s.workload).cgroup ?? null,
          onThrottle: (rec) => {
            const cur = this.records.get(s.migrationId);
            if (cur) this.records.save({ ...cur, throttle: rec });
          },
        });
        this.#sessions.set(s.migrationId, session);
      }
      if (!session) throw new FerryError(ErrorCode.Unavailable, `the pre-copy session of ${s.migrationId} was lost (agent restarted): roll back`);
      try {
        const report = await session.round(s.round, s.throttle);
        // This step's record is saved last: it must carry what the round put on record.
        m.throttle = session.throttleRecord;
        return report;
      } catch (err) {
        // A round that failed leaves the stream in an unknown state: the migration rolls back.
        session.stop();
        this.#sessions.delete(s.migrationId);
        throw err;
      }
    });
  }

  freeze(s: StepBase) {
    return this.#once(s, 'source', async (m) => {
      const session = this.#sessions.get(s.migrationId);
      if (m.precopy && !session) throw new FerryError(ErrorCode.Unavailable, `the pre-copy session of ${s.migrationId} was lost (agent restarted): roll back`);
      const root = this.#rootPid(s.workload);
      m.netns = this.workloads.netnsOf(s.workload);
      // Dumped while the workload still runs: it costs tens of milliseconds (a live migration's last round did it).
      m.netConfig = session ? session.netConfig : await this.#network.dump(m.netns);
      this.records.save(m);
      // Locked before the freeze: a socket in repair mode would still acknowledge what arrives.
      this.#network.lock(m.netns);
      let c: Checkpoint;
      const t0 = performance.now();
      try {
        c = Checkpoint.begin(root, { migration: true });
      } catch (err) {
        this.#network.unlock(m.netns);
        throw err;
      }
      const t1 = performance.now();
      // Frozen: the throttle goes (the injected calls of collect must not crawl under it).
      session?.unthrottle();
      try {
        c.collect();
        this.#frozeMs.set(s.migrationId, { freezeMs: t1 - t0, collectMs: performance.now() - t1 });
      } catch (err) {
        this.#network.unlock(m.netns);
        c.release();
        throw err;
      }
      this.#checkpoints.set(s.migrationId, c);
      // On record first, then held: from here the freeze outlives this agent (see FrozenTree.heldFreeze).
      m.held = c.tree.heldFreeze();
      const w = this.workloads.get(s.workload);
      m.workloadCommand = w.command;
      m.resources = { limits: w.limits, requests: w.requests };
      this.records.save(m);
      c.tree.holdOnAgentDeath();
      this.workloads.setState(m.workload, 'frozen');
      return { tasks: c.tree.tasks.size };
    });
  }

  send(s: StepBase & { endpoint?: StreamEndpoint }) {
    return this.#once(s, 'source', async (m) => {
      const c = this.#checkpoints.get(s.migrationId);
      if (!c) throw new FerryError(ErrorCode.Unavailable, `the frozen state of ${s.migrationId} was lost (agent restarted): roll back`);
      rmSync(m.imageDir, { recursive: true, force: true });
      const session = this.#sessions.get(s.migrationId);
      if (m.precopy) {
        if (!session) throw new FerryError(ErrorCode.Unavailable, `the pre-copy session of ${s.migrationId} was lost (agent restarted): roll back`);
        const t = performance.now();
        const extra: Record<string, string> = { [WORKLOAD_FILE]: JSON.stringify(workloadFile(m)) };
        if (m.netConfig) extra[NETNS_FILE] = JSON.stringify(m.netConfig);
        const out = await session.final(c, m.imageDir, extra);
        this.#sessions.delete(s.migrationId);
        this.#learn(s.migrationId, c, performance.now() - t - out.report.durationMs);
        return { bytesTransferred: out.bytesTransferred, bytesOnWire: out.bytesOnWire };
      }
      if (!s.endpoint) throw new FerryError(ErrorCode.InvalidRequest, `${s.migrationId}: no data stream to send on (no endpoint, no pre-copy session)`);
      prepareImageDir(m.imageDir);
      c.dumpMemory(m.imageDir);
      writeImage(m.imageDir, c.image());
      // The destination registers the workload under the same command line.
      writeFileSync(path.join(m.imageDir, WORKLOAD_FILE), JSON.stringify(workloadFile(m)));
      if (m.netConfig) writeFileSync(path.join(m.imageDir, NETNS_FILE), JSON.stringify(m.netConfig));
      const conn = await connectStream(s.endpoint, this.#streamAuth(s));
      try {
        const stats = await sendImageDir(conn, m.imageDir);
        return { bytesTransferred: stats.bytes, bytesOnWire: stats.bytesOnWire };
      } finally {
        await conn.end();
      }
    });
  }

  /** Folds this migration's measured freeze and dump into the cost model of later predictions. */
  #learn(id: string, c: Checkpoint, finalExtraMs: number): void {
    const f = this.#frozeMs.get(id);
    this.#frozeMs.delete(id);
    if (!f) return;
    const size = { processes: c.tree.pids.length, threads: c.tree.tasks.size, netns: false };
    costModel.learn('freeze', size, f.freezeMs);
    costModel.learn('dump', size, f.collectMs + Math.max(0, finalExtraMs));
  }

  /** After commit: the workload now lives on the destination; end the frozen original. */
  cleanup(s: StepBase) {
    return this.#once(s, 'source', async (m) => {
      this.#sessions.get(s.migrationId)?.stop();
      this.#sessions.delete(s.migrationId);
      const c = this.#checkpoints.get(s.migrationId);
      if (c) c.kill();
      else if (m.held) killHeld(m.held);
      this.#checkpoints.delete(s.migrationId);
      await this.#network.removeSource(m.netns ?? null);
      this.workloads.forget(m.workload);
      rmSync(m.imageDir, { recursive: true, force: true });
      return { done: true as const };
    });
  }

  /** Rollback: the workload runs on here, as before. Fences the migration. */
  thaw(s: RollbackStep) {
    const m = this.#record(s, 'source', true);
    if (m.fenced) return { done: true as const };
    // Tracking ends (the uffds close), the stream drops, the CPU quota goes: full speed again.
    const session = this.#sessions.get(s.migrationId);
    session?.stop();
    this.#sessions.delete(s.migrationId);
    unthrottle(m.throttle);
    const c = this.#checkpoints.get(s.migrationId);
    this.#network.unlock(m.netns ?? null);
    if (c) c.release();
    else if (m.held) {
      // The checkpoint died with the previous agent: its TCP connections are still in repair mode.
      leaveRepairAll(m.held.pids);
      releaseHeld(m.held);
    }
    this.#checkpoints.delete(s.migrationId);
    if (m.held) this.workloads.setState(m.workload, 'running');
    rmSync(m.imageDir, { recursive: true, force: true });
    m.fenced = true;
    this.records.save(m);
    return { done: true as const };
  }

  // --- destination ----------------------------------------------------------------------------

  /**
   * Destination preflight: refuses, before anything is frozen, a workload whose limits this host
   * cannot enforce or whose requests do not fit, or one holding a file lock this host sees held
   * (storage shared with the source: a lock is never handed between hosts); otherwise makes its
   * cgroup with those limits, so every husk of the tree is born into groups that already hold them.
   */
  admit(s: StepBase & { limits: ResourceLimits; requests: ResourceRequests; locks: HeldLock[] }) {
    return this.#once(s, 'destination', (m) => {
      if (!faultArmed('agent:admit:ignore-locks')) refuseSharedLocks(s.locks, { source: s.peer, destination: this.host });
      this.workloads.admit(s.workload, s.limits, s.requests);
      this.workloads.prepareCgroup(s.workload, s.limits);
      m.resources = { limits: s.limits, requests: s.requests };
      return { done: true as const };
    });
  }

  /** The limits the workload had when its source froze it (an update during pre-copy is taken over), else those admitted. */
  #finalLimits(m: LocalMigration): ResourceLimits {
    return readJson(path.join(m.imageDir, WORKLOAD_FILE), WorkloadCommandFile)?.limits ?? m.resources?.limits ?? {};
  }

  /** Groups to be born into (during pre-copy, before the final limits are known: those admitted). */
  #joinFiles(workload: string): string[] {
    const cg = this.workloads.cgroupOf(workload);
    cg.create();
    return cg.procsFiles();
  }

  async receive(s: StepBase) {
    const m = this.#record(s, 'destination');
    // A replay while the pre-copy session runs (the coordinator restarted): the source is connected already.
    const open = this.#endpoints.get(s.migrationId);
    const server = await this.#listener();
    // Its source connected already (one chance per migration): what it sends arrives as before.
    if (open && (this.#warm.has(s.migrationId) || server.claimed(s.migrationId))) return { endpoint: open };
    if (existsSync(path.join(m.imageDir, IMAGE_JSON))) {
      // A replayed transfer (the coordinator restarted after it): the image is here already and
      // the source's send answers from its record without connecting.
      this.#receiving.set(s.migrationId, Promise.resolve({ files: 0, bytes: 0, bytesOnWire: 0, ms: 0 }));
      return { endpoint: server.endpoint };
    }
    // Only the source of this migration, by its certificate, may connect for it.
    const listener = server.expect(s.migrationId, s.peer);
    this.#expected.set(s.migrationId, listener);
    const forget = () => {
      if (this.#expected.get(s.migrationId) === listener) this.#expected.delete(s.migrationId);
    };
    const receiving = listener.accept({ timeoutMs: 60_000 }).finally(forget).then(async (conn) => {
      let failed = false;
      try {
        // A live migration's source opens a pre-copy session; stop-and-copy sends the image at once.
        const first = await conn.next();
        if (first?.header.t === 'session') await this.#warmSession(s.migrationId, m, s.verify !== false).run(conn);
        else if (first) conn.unshift(first);
        return await receiveImageDir(conn, m.imageDir);
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        // After a failure the error frame is on its way: a half-close lets the source read why
        // (a reset would discard it), for a bounded time.
        if (failed) await Promise.race([conn.end(), sleep(2_000)]);
        conn.destroy();
      }
    });
    receiving.catch(() => undefined);
    this.#receiving.set(s.migrationId, receiving);
    this.#endpoints.set(s.migrationId, listener.endpoint);
    return { endpoint: listener.endpoint };
  }

  /** The warm restore of a live migration, its namespace's name on record before it is built. */
  #warmSession(id: string, m: LocalMigration, verify: boolean): PrecopyDestination {
    if (this.#warm.has(id)) throw new FerryError(ErrorCode.Conflict, `${id}: a second pre-copy stream`);
    const warm = new PrecopyDestination({
      network: this.#network,
      cgroupProcs: () => this.#joinFiles(m.workload),
      verify,
      landing: () => {
        const name = this.#network.landingName(m.workload, id);
        const cur = this.records.get(id) ?? m;
        this.records.save({ ...cur, landing: name, warm: true });
        return name;
      },
    });
    this.#warm.set(id, warm);
    const cur = this.records.get(id) ?? m;
    this.records.save({ ...cur, warm: true });
    return warm;
  }

  /**
   * Builds the tree from the received image and holds it stopped: it runs only after commit.
   * Then (unless the migration turned it off) verifies it against the image: a difference fails
   * the step, so the migration rolls back before its commit point.
   */
  restore(s: StepBase) {
    return this.#once(s, 'destination', async () => {
      const receiving = this.#receiving.get(s.migrationId);
      // The landing checks of a live migration ran in here: their figures are wanted below.
      const warmLanding = this.#warm.get(s.migrationId)?.landing?.rounds ?? null;
      if (receiving) await receiving;
      const pid = await this.#build(s.migrationId);
      if (s.verify === false) return { pid };
      return { pid, verify: this.#verify(s.migrationId, warmLanding) };
    });
  }

  /** Compares the held tree with its image; on a difference the tree is torn down and stays failed. */
  #verify(id: string, landing: readonly { pages: number; ms: number }[] | null): VerifyReport {
    const failed = this.#verifyFailed.get(id);
    if (failed) throw failed;
    const b = this.#held.get(id);
    if (!b) throw new FerryError(ErrorCode.Internal, `${id}: no restored tree to verify`);
    const pids = b.image.processes.map((p) => b.husks.get(p.pid)!.pid);
    try {
      // Not held (no cgroup here): the husks are traced and still have their scratch page.
      const scratch = new Map([...b.husks.values()].map((h) => [h.pid, [h.scratchSpan]]));
      const m = this.records.get(id)!;
      const cg = this.workloads.cgroupOf(m.workload);
      const cgroup = { limits: this.#finalLimits(m), read: () => cg.read(), notMemberOf: (pid: number) => cg.notMemberOf(pid) };
      return verifyTree(b.image, pids, { dir: m.imageDir, cgroup, ...(landing ? { landing } : {}), ...(b.frozen ? {} : { ferryOwn: (pid) => scratch.get(pid) ?? [] }) });
    } catch (err) {
      const e = FerryError.from(err);
      this.#verifyFailed.set(id, e);
      throw e;
    }
  }

  /** Builds the held tree once (in its rebuilt network namespace); returns the host pid of its root. */
  async #build(id: string): Promise<number> {
    const held = this.#held.get(id);
    if (held) return rootHusk(held).pid;
    const m = this.records.get(id)!;
    const image = readImage(m.imageDir);
    assertCompatible(image.machine);
    // The tree joins this host's cgroup for the workload, not the path it had on its source.
    const cgroup = this.workloads.cgroupFor(m.workload);
    if (cgroup) for (const p of image.processes) p.cgroup = cgroup;
    // The limits the source had at the freeze; verification (agent/engine/verify/cgroup.ts) reads them back before the commit.
    const cg = this.workloads.prepareCgroup(m.workload, this.#finalLimits(m));
    this.workloads.ensureLog(m.workload);
    const netConfig = readJson(path.join(m.imageDir, NETNS_FILE), NetnsConfig);
    const warm = this.#warm.get(id);
    if (warm) return this.#buildWarm(id, warm, image, m.imageDir, netConfig);
    if (image.processes.some((p) => p.vmas.some((v) => v.precopied)))
      throw new FerryError(ErrorCode.Unavailable, `${id}: the memory pre-copied into this host's husks was lost (agent restarted): roll back`);
    if (!image.container) for (const p of image.processes) waitPidFree(p.pid);
    let net: LandedNetns | null = null;
    if (netConfig) {
      m.landing = this.#network.landingName(m.workload, id);
      this.records.save(m);
      if (!m.landing) throw new FerryError(ErrorCode.Incompatible, `${this.host} has no workload network configured: it cannot take a workload with a network namespace of its own`);
      net = await this.#network.land(netConfig, m.landing);
    }
    let husks: Map<number, Husk> | null = null;
    try {
      husks = createHusks(image, m.imageDir, { cgroupProcs: cg.procsFiles(), ...(net ? { netns: net.handle.path } : {}) });
      for (const p of image.processes) buildProcess(husks.get(p.pid)!, p, m.imageDir);
      corruptIfArmed(image, husks);
    } catch (err) {
      for (const h of [...(husks?.values() ?? [])].reverse()) h.abort();
      await this.#network.discard(net, null);
      throw err;
    }
    const built: Built = { husks, image, net };
    this.#hold(id, built);
    this.#held.set(id, built);
    return rootHusk(built).pid;
  }

  /**
   * Holds a built tree for the commit so that it outlives this agent: registers in, its cgroup
   * frozen, on record, then untraced. Without a cgroup of its own here it stays in ptrace-stop
   * (and dies with the agent).
   */
  #hold(id: string, b: Built): void {
    const m = this.records.get(id)!;
    const rel = this.workloads.cgroupFor(m.workload);
    const root = cgroup2Root();
    if (!rel || !root) return;
    const dir = path.join(root, rel);
    try {
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

  /** Warm restore: the husks built during pre-copy get what only the image carries. */
  #buildWarm(id: string, warm: PrecopyDestination, image: ReturnType<typeof readImage>, dir: string, netConfig: NetnsConfig | null): number {
    let husks: Map<number, Husk>;
    try {
      if (JSON.stringify(netConfig) !== JSON.stringify(warm.net?.config ?? null))
        throw new FerryError(ErrorCode.Unsupported, `${id}: the workload's network configuration changed during pre-copy; the namespace rebuilt here no longer matches`);
      husks = warm.finalize(image, dir);
      corruptIfArmed(image, husks);
    } catch (err) {
      void warm.discard();
      this.#warm.delete(id);
      throw err;
    }
    warm.detach();
    this.#warm.delete(id);
    const built: Built = { husks, image, net: warm.net };
    try {
      this.#hold(id, built);
    } catch (err) {
      void this.#network.discard(warm.net, null);
      throw err;
    }
    this.#held.set(id, built);
    return rootHusk(built).pid;
  }

  /** After commit: let the restored tree run. Rebuilt from the image if the agent restarted meanwhile. */
  resume(s: StepBase) {
    return this.#once(s, 'destination', async (m) => {
      let pid: number;
      let image: ReturnType<typeof readImage>;
      let net: LandedNetns | null;
      const built = this.#held.get(s.migrationId);
      if (!built && m.heldTree) {
        // The agent restarted while the tree waited, frozen, for this: it is all there.
        image = readImage(m.imageDir);
        const cfg = readJson(path.join(m.imageDir, NETNS_FILE), NetnsConfig);
        net = cfg && m.landing ? this.#network.landed(cfg, m.landing) : null;
        if (net) this.#network.goLive(net);
        activateHeldConnections(image, m.heldTree);
        thawHeldTree(m.heldTree);
        pid = m.heldTree.pids[0]!;
      } else {
        pid = await this.#build(s.migrationId);
        const b = this.#held.get(s.migrationId)!;
        ({ image, net } = b);
        // Attached and announced first: connections leave repair mode now, and their window
        // probes must find the way.
        if (net) this.#network.goLive(net);
        if (b.frozen && m.heldTree) {
          for (const h of b.husks.values()) h.activateSockets();
          thawHeldTree(m.heldTree);
        } else {
          for (const p of image.processes) finishProcess(b.husks.get(p.pid)!, p);
          // Children first, so a parent never runs while a child it may wait for is still held.
          for (const p of [...image.processes].reverse()) b.husks.get(p.pid)!.release();
        }
      }
      this.#held.delete(s.migrationId);
      m.heldTree = null;
      m.restoredPid = pid;
      // A container's init is the child of the `unshare` that holds its namespaces open.
      const shimPid = image.container ? Number(readStat(pid).f(4)) : null;
      const wf = readJson(path.join(m.imageDir, WORKLOAD_FILE), WorkloadCommandFile) ?? { command: null };
      m.workloadCommand = wf.command;
      const address = net ? addressOf(net.config) : undefined;
      this.workloads.adopt({
        name: m.workload,
        limits: wf.limits ?? m.resources?.limits ?? {},
        requests: wf.requests ?? m.resources?.requests ?? {},
        rootPid: pid,
        shimPid,
        command: m.workloadCommand ?? [image.processes[0]!.comm],
        ...(net ? { netns: net.handle.path } : {}),
        ...(address ? { address } : {}),
      });
      rmSync(m.imageDir, { recursive: true, force: true });
      return { pid };
    });
  }

  /** Rollback: nothing of the migration may run here. Fences the migration. A second call joins the first. */
  discard(s: RollbackStep): Promise<{ done: true }> {
    const running = this.#discarding.get(s.migrationId);
    if (running) return running;
    const p = this.#discard(s).finally(() => this.#discarding.delete(s.migrationId));
    this.#discarding.set(s.migrationId, p);
    return p;
  }

  async #discard(s: RollbackStep): Promise<{ done: true }> {
    const m = this.#record(s, 'destination', true);
    // Fenced: nobody may connect for this migration any more.
    this.#expected.get(s.migrationId)?.close();
    this.#expected.delete(s.migrationId);
    if (m.fenced) return { done: true as const };
    const held = this.#held.get(s.migrationId);
    if (m.heldTree) killHeldTree(m.heldTree);
    if (held) for (const h of [...held.husks.values()].reverse()) h.abort();
    this.#held.delete(s.migrationId);
    await this.#warm.get(s.migrationId)?.discard();
    this.#warm.delete(s.migrationId);
    await this.#network.discard(held?.net ?? null, m.landing ?? null);
    // The groups admit made go too, unless the workload runs here after all (a migration back that rolled back).
    if (!this.workloads.runsHere(m.workload)) this.workloads.cgroupOf(m.workload).remove();
    rmSync(m.imageDir, { recursive: true, force: true });
    rmSync(`${m.imageDir}.partial`, { recursive: true, force: true });
    m.fenced = true;
    this.records.save(m);
    return { done: true as const };
  }
}

/** This agent's part of the data stream (AgentConfig.stream with its identity). */
export interface DataStreamSettings {
  credentials: StreamCredentials;
  port: number;
  encrypt: boolean;
}

interface Built {
  husks: Map<number, Husk>;
  image: ReturnType<typeof readImage>;
  net: LandedNetns | null;
  /** Held frozen and untraced (see engine/hold.ts), not in ptrace-stop. */
  frozen?: boolean;
}

const rootHusk = (b: Built): Husk => b.husks.get(b.image.processes[0]!.pid)!;

/** workload.json beside the image: what the source's registry knew of the workload. */
type WorkloadFile = z.infer<typeof WorkloadCommandFile>;

const workloadFile = (m: LocalMigration): WorkloadFile => ({ command: m.workloadCommand, ...(m.resources ?? {}) });

/** A file the source sent beside the image, validated; a bad one fails the step (BadImage), never the agent. */
const readJson = readSideFile;
