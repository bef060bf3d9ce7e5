// The destination's part of each migration phase: admit, receive (the image, or a live
// migration's pre-copy session), restore (build, hold and verify the tree), then resume after
// the commit or discard on rollback. What lives only in memory is one session per migration
// (destination-session.ts); the held tree's pids are on record, so a restarted agent can still
// resume or kill it.
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { faultArmed } from '../../shared/fault.ts';
import { IMAGE_JSON } from '../../shared/image-format.ts';
import type { HeldLock, StepBase } from '../../shared/migration.ts';
import type { ResourceLimits, ResourceRequests } from '../../shared/resources.ts';
import { readStat } from '../engine/process/procfs.ts';
import { readImage } from '../engine/image/image-io.ts';
import { finishProcess } from '../engine/restore.ts';
import { activateHeldConnections, killHeldTree, thawHeldTree } from '../engine/process/hold.ts';
import { refuseSharedLocks } from '../engine/files/lock-sharing.ts';
import { StreamServer } from '../transfer/stream-server.ts';
import { noIdentity } from '../transfer/auth.ts';
import type { Workloads } from '../workloads.ts';
import { addressOf, type LandedNetns, type NetworkHandoff } from '../net/handoff.ts';
import { receiveImageDir } from './image-transfer.ts';
import type { LocalMigration } from './records.ts';
import { PrecopyDestination } from './precopy-destination.ts';
import { readNetnsFile, readWorkloadFile } from './side-files.ts';
import type { RollbackStep, StepRunner } from './step-runner.ts';
import type { DataStreamSettings } from './stream-settings.ts';
import type { BuildResult, DestinationSession } from './destination-session.ts';
import { HeldTreeBuilder } from './destination-build.ts';
import { raiseForSwitchover } from '../switchover-priority.ts';

/** What the destination's steps ask of the tree builder: the real one, or a fake in unit tests. */
export type TreeBuilder = Pick<HeldTreeBuilder, 'build' | 'buildVerified'>;

export class DestinationSteps {
  readonly #sessions = new Map<string, DestinationSession>();
  readonly #builder: TreeBuilder;
  /** This agent's one stream listener, opened on the first migration it receives. */
  #server: Promise<StreamServer> | null = null;

  constructor(
    private readonly run: StepRunner,
    private readonly address: string,
    private readonly workloads: Workloads,
    private readonly network: NetworkHandoff,
    /** This agent's identity and stream settings; null: it takes no workload from anywhere. */
    private readonly stream: DataStreamSettings | null,
    builder?: TreeBuilder,
  ) {
    this.#builder = builder ?? new HeldTreeBuilder(run.host, run.records, workloads, network);
  }

  #session(id: string): DestinationSession {
    let s = this.#sessions.get(id);
    if (!s) this.#sessions.set(id, (s = {}));
    return s;
  }

  /** The listener, opened once; a failed open is tried again by the next migration. */
  #listener(): Promise<StreamServer> {
    const st = this.stream;
    if (!st) return Promise.reject(noIdentity(this.run.host));
    this.#server ??= StreamServer.open({ address: this.address, port: st.port, credentials: st.credentials, encrypt: st.encrypt }).catch((err: unknown) => {
      this.#server = null;
      throw err;
    });
    return this.#server;
  }

  /**
   * Destination preflight: refuses, before anything is frozen, a workload whose limits this host
   * cannot enforce or whose requests do not fit, or one holding a file lock this host sees held
   * (storage shared with the source: a lock is never handed between hosts); otherwise makes its
   * cgroup with those limits, so every husk of the tree is born into groups that already hold them.
   */
  admit(s: StepBase & { limits: ResourceLimits; requests: ResourceRequests; locks: HeldLock[] }) {
    return this.run.once(s, 'destination', (m) => {
      if (!faultArmed('agent:admit:ignore-locks')) refuseSharedLocks(s.locks, { source: s.peer, destination: this.run.host });
      this.workloads.admit(s.workload, s.limits, s.requests);
      this.workloads.prepareCgroup(s.workload, s.limits);
      m.resources = { limits: s.limits, requests: s.requests };
      return { done: true as const };
    });
  }

  async receive(s: StepBase) {
    const m = this.run.record(s, 'destination');
    const sess = this.#session(s.migrationId);
    // A replay while the pre-copy session runs (the coordinator restarted): the source is connected already.
    const open = sess.endpoint;
    const server = await this.#listener();
    // Its source connected already (one chance per migration): what it sends arrives as before.
    if (open && (sess.warm || server.claimed(s.migrationId))) return { endpoint: open };
    if (existsSync(path.join(m.imageDir, IMAGE_JSON))) {
      // A replayed transfer (the coordinator restarted after it): the image is here already and
      // the source's send answers from its record without connecting.
      sess.receiving = Promise.resolve({ files: 0, bytes: 0, bytesOnWire: 0, ms: 0 });
      return { endpoint: server.endpoint };
    }
    // Only the source of this migration, by its certificate, may connect for it.
    const listener = server.expect(s.migrationId, s.peer);
    if ((s.mode === 'postcopy' || s.mode === 'hybrid') && !sess.faults) {
      const faults = server.expect(s.migrationId, s.peer, 'faults').accept({ timeoutMs: 60_000 });
      faults.catch(() => undefined);
      sess.faults = faults;
    }
    sess.expected = listener;
    const forget = () => {
      if (sess.expected === listener) delete sess.expected;
    };
    const receiving = listener.accept({ timeoutMs: 60_000 }).finally(forget).then(async (conn) => {
      let failed = false;
      let keep = false;
      try {
        // A live migration's source opens a pre-copy session; stop-and-copy sends the image at once.
        const first = await conn.next();
        if (first?.header.t === 'session') await this.#warmSession(s.migrationId, sess, m, s.verify !== false).run(conn);
        else if (first) conn.unshift(first);
        // The image comes now: its build, verification and the resume are all downtime.
        sess.lowerPriority ??= raiseForSwitchover();
        const stats = await receiveImageDir(conn, m.imageDir);
        // A post-copy switchover: the stream carries the push after the resume.
        if (sess.warm?.postcopy) {
          sess.pushStream = conn;
          keep = true;
        }
        return stats;
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        // After a failure the error frame is on its way: a half-close lets the source read why
        // (a reset would discard it), for a bounded time.
        if (failed) await Promise.race([conn.end(), sleep(2_000)]);
        if (!keep) conn.destroy();
      }
    });
    receiving.catch(() => undefined);
    sess.receiving = receiving;
    // Built and verified as soon as the last bytes are in, not when the coordinator asks: the
    // restore step then only collects the result, and its round trip leaves the downtime.
    const verify = s.verify !== false;
    const prebuilt = receiving.then(() => this.#builder.buildVerified(s.migrationId, sess, verify));
    // A failed build is reported to the restore step waiting for it; a retried step builds again
    // (a failed warm build stays failed: see HeldTreeBuilder.build).
    prebuilt.catch(() => {
      if (sess.prebuilt === prebuilt) delete sess.prebuilt;
    });
    sess.prebuilt = prebuilt;
    sess.endpoint = listener.endpoint;
    return { endpoint: listener.endpoint };
  }

  /** The warm restore of a live migration, its namespace's name on record before it is built. */
  #warmSession(id: string, sess: DestinationSession, m: LocalMigration, verify: boolean): PrecopyDestination {
    if (sess.warm) throw new FerryError(ErrorCode.Conflict, `${id}: a second pre-copy stream`);
    const records = this.run.records;
    const warm = new PrecopyDestination({
      network: this.network,
      cgroupProcs: () => {
        // Born into the groups admitted (the final limits are not known before the freeze).
        const cg = this.workloads.cgroupOf(m.workload);
        cg.create();
        return cg.procsFiles();
      },
      verify,
      // From the last delta on, the workload waits for this agent (switchover-priority.ts).
      switchover: () => {
        sess.lowerPriority ??= raiseForSwitchover();
      },
      landing: () => {
        const name = this.network.landingName(m.workload, id);
        const cur = records.get(id) ?? m;
        records.save({ ...cur, landing: name, warm: true });
        return name;
      },
    });
    sess.warm = warm;
    const cur = records.get(id) ?? m;
    records.save({ ...cur, warm: true });
    return warm;
  }

  /**
   * Builds the tree from the received image and holds it stopped: it runs only after commit.
   * Then (unless the migration turned it off) verifies it against the image: a difference fails
   * the step, so the migration rolls back before its commit point.
   */
  restore(s: StepBase): Promise<BuildResult> {
    return this.run.once(s, 'destination', () => {
      const sess = this.#session(s.migrationId);
      if (sess.prebuilt) return sess.prebuilt;
      // Not built when the stream ended (a replay after a restart): built now, where a discard
      // that comes meanwhile finds it and waits for it before it tears down what it holds.
      const receiving = sess.receiving;
      const building = (async () => {
        if (receiving) await receiving;
        return this.#builder.buildVerified(s.migrationId, sess, s.verify !== false);
      })();
      building.catch(() => {
        if (sess.prebuilt === building) delete sess.prebuilt;
      });
      sess.prebuilt = building;
      return building;
    });
  }

  /** After commit: let the restored tree run. Rebuilt from the image if the agent restarted meanwhile. */
  resume(s: StepBase) {
    return this.run.once(s, 'destination', async (m) => {
      const sess = this.#session(s.migrationId);
      let pid: number;
      let image: ReturnType<typeof readImage>;
      let net: LandedNetns | null;
      if (!sess.held && m.heldTree && m.postcopy) {
        // Its missing pages were registered with this agent's previous life (whose keeper ended it):
        // run now, they would read as zeros. Nothing runs; mig.postcopy reports the workload lost.
        killHeldTree(m.heldTree);
        m.heldTree = null;
        return { pid: 0 };
      }
      if (!sess.held && m.heldTree) {
        // The agent restarted while the tree waited, frozen, for this: it is all there.
        image = readImage(m.imageDir);
        const cfg = readNetnsFile(m.imageDir);
        net = cfg && m.landing ? this.network.landed(cfg, m.landing) : null;
        if (net) this.network.goLive(net);
        activateHeldConnections(image, m.heldTree);
        thawHeldTree(m.heldTree);
        pid = m.heldTree.pids[0]!;
      } else {
        pid = await this.#builder.build(s.migrationId, sess);
        const b = sess.held!;
        ({ image, net } = b);
        // Serving faults before any thread runs: the first one is answered at once.
        if (b.postcopy) {
          const push = sess.pushStream;
          const faults = await sess.faults;
          if (!push || !faults) throw new FerryError(ErrorCode.Internal, `${s.migrationId}: post-copy without its channels`);
          b.postcopy.start({ push, faults }, s.postcopyBackup ?? null);
          sess.postcopy = b.postcopy;
          delete sess.pushStream;
        }
        // Attached and announced first: connections leave repair mode now, and their window
        // probes must find the way.
        if (net) this.network.goLive(net);
        if (b.frozen && m.heldTree) {
          for (const h of b.husks.values()) h.activateSockets();
          thawHeldTree(m.heldTree);
        } else {
          // Without a cgroup its threads got their state at the hold already: only the sockets are left.
          for (const p of image.processes) {
            if (b.threadsDone) b.husks.get(p.pid)!.activateSockets();
            else finishProcess(b.husks.get(p.pid)!, p);
          }
          // Children first, so a parent never runs while a child it may wait for is still held.
          for (const p of [...image.processes].reverse()) b.husks.get(p.pid)!.release();
        }
      }
      delete sess.held;
      delete sess.prebuilt;
      delete sess.receiving;
      m.heldTree = null;
      m.restoredPid = pid;
      // A container's init is the child of the `unshare` that holds its namespaces open.
      const shimPid = image.container ? Number(readStat(pid).f(4)) : null;
      const wf = readWorkloadFile(m.imageDir) ?? { command: null };
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
      sess.lowerPriority?.();
      delete sess.lowerPriority;
      return { pid };
    });
  }

  /**
   * After a post-copy switchover: waits until every page arrived (the figures), or says why the
   * workload was lost. A migration without post-copy has nothing to say.
   */
  postcopy(s: StepBase) {
    return this.run.once(s, 'destination', async (m) => {
      const pc = this.#session(s.migrationId).postcopy;
      if (pc) return pc.done.then(
        (figures) => ({ figures, lost: null }),
        (err: unknown) => ({ figures: null, lost: FerryError.from(err).message }),
      );
      if (m.postcopy)
        return { figures: null, lost: `the agent on ${this.run.host} restarted during post-copy: its keeper ended the workload, which lacked pages its source held` };
      return { figures: null, lost: null };
    });
  }

  /** Rollback: nothing of the migration may run here. Fences the migration. A second call joins the first. */
  discard(s: RollbackStep): Promise<{ done: true }> {
    const sess = this.#session(s.migrationId);
    if (sess.discarding) return sess.discarding;
    const p = this.#discard(s, sess).finally(() => {
      if (sess.discarding === p) delete sess.discarding;
    });
    sess.discarding = p;
    return p;
  }

  async #discard(s: RollbackStep, sess: DestinationSession): Promise<{ done: true }> {
    sess.lowerPriority?.();
    delete sess.lowerPriority;
    const m = this.run.record(s, 'destination', true);
    // Fenced: nobody may connect for this migration any more.
    sess.expected?.close();
    delete sess.expected;
    if (m.fenced) return { done: true as const };
    // A build under way finishes first (or fails): what it holds is torn down below.
    await sess.prebuilt?.catch(() => undefined);
    delete sess.prebuilt;
    delete sess.warmFailed;
    delete sess.verifyFailed;
    const held = sess.held;
    held?.postcopy?.discard();
    sess.pushStream?.destroy();
    delete sess.pushStream;
    void sess.faults?.then((c) => c.destroy(), () => undefined);
    delete sess.faults;
    if (m.heldTree) killHeldTree(m.heldTree);
    if (held) for (const h of [...held.husks.values()].reverse()) h.abort();
    delete sess.held;
    await sess.warm?.discard();
    delete sess.warm;
    await this.network.discard(held?.net ?? null, m.landing ?? null);
    // The groups admit made go too, unless the workload runs here after all (a migration back that rolled back).
    if (!this.workloads.runsHere(m.workload)) this.workloads.cgroupOf(m.workload).remove();
    rmSync(m.imageDir, { recursive: true, force: true });
    rmSync(`${m.imageDir}.partial`, { recursive: true, force: true });
    m.fenced = true;
    this.run.records.save(m);
    return { done: true as const };
  }
}
