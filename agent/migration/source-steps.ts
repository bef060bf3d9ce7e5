// The source's part of each migration phase: preflight, pre-copy rounds, freeze, send, then
// cleanup after the commit or thaw on rollback. What lives only in this agent's memory (the
// checkpoint handle, the pre-copy session, the last delta on its way) is one session per
// migration; what must outlive the agent is on record (records.ts), so a restarted agent can
// still thaw or end the frozen workload from the pids there.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { PostcopyFigures, StepBase } from '../../shared/migration.ts';
import { Checkpoint, preflightTree } from '../engine/checkpoint.ts';
import { killHeld, releaseHeld } from '../engine/process/freeze.ts';
import type { ProgressSink } from './progress.ts';
import { listTasks } from '../engine/process/procfs.ts';
import { prepareImageDir, writeImage } from '../engine/image/image-io.ts';
import { heldLocks } from '../engine/files/lock-sharing.ts';
import { leaveRepairAll } from '../engine/sockets/sockets.ts';
import type { MethodRequest } from '../engine/memory/dirty/choose.ts';
import { connectStream, type StreamAuth, type StreamEndpoint } from '../transfer/stream.ts';
import { noIdentity } from '../transfer/auth.ts';
import type { Workloads } from '../workloads.ts';
import type { NetworkHandoff } from '../net/handoff.ts';
import { sendImageDir } from './image-transfer.ts';
import type { LocalMigration } from './records.ts';
import { PrecopySource, type RoundReport } from './precopy-source.ts';
import { costModel } from './precopy-costs.ts';
import { unthrottle } from './throttle.ts';
import { backupDir, writeBackup } from './postcopy-backup.ts';
import { NETNS_FILE, WORKLOAD_FILE, workloadFile } from './side-files.ts';
import type { RollbackStep, StepRunner } from './step-runner.ts';
import type { DataStreamSettings } from './stream-settings.ts';
import { raiseForSwitchover } from '../switchover-priority.ts';

export type SendResult = { bytesTransferred: number; bytesOnWire: number };

/** What the source holds of one migration in memory only (lost if the agent restarts). */
interface SourceSession {
  /** The live checkpoint handle of the frozen workload. */
  checkpoint?: Checkpoint;
  /** A live migration's pre-copy session (stream, tracker). */
  precopy?: PrecopySource;
  /** The last delta of a live migration, sending since its freeze (the transfer step waits for it). */
  finalSend?: Promise<SendResult>;
  /** How long the freeze and the state dump took, to learn the costs from. */
  frozeMs?: { freezeMs: number; collectMs: number };
  /** A post-copy switchover's pushing and fault serving, until the destination has every page. */
  postcopy?: Promise<PostcopyFigures>;
  /** Ends the dirty tracking the last delta left in place (cleanup: after the kill; thaw: before the thaw). */
  endTracking?: () => void;
  /** Puts the agent's priority back once this side's switchover work is done (switchover-priority.ts). */
  lowerPriority?: () => void;
}

/** What the source's steps ask of the engine: the real one, or a fake in unit tests. */
export interface SourceEngine {
  /** Everything the engine cannot carry, refused before anything is frozen. */
  preflight(root: number): { pids: number[] };
  /** Freezes the tree (its state still to collect), in its own cgroup when it has one. */
  begin(root: number, ownCgroup: string | null): Checkpoint;
}

export const engineSource: SourceEngine = {
  preflight: (root) => preflightTree(root, { migration: true }),
  begin: (root, ownCgroup) => Checkpoint.begin(root, { migration: true, ownCgroup }),
};

export class SourceSteps {
  readonly #sessions = new Map<string, SourceSession>();

  constructor(
    private readonly run: StepRunner,
    private readonly workloads: Workloads,
    private readonly network: NetworkHandoff,
    /** Dirty tracking for live migration: auto (uffd-wp where it works, else hashing), or one forced. */
    private readonly tracking: MethodRequest,
    /** This agent's identity and stream settings; null: it sends no workload anywhere. */
    private readonly stream: DataStreamSettings | null,
    private readonly engine: SourceEngine = engineSource,
    /** Where the rounds this agent sends report how far they got (none: not reported). */
    private readonly progress: ProgressSink | null = null,
  ) {}

  get #host(): string {
    return this.run.host;
  }

  #session(id: string): SourceSession {
    let s = this.#sessions.get(id);
    if (!s) this.#sessions.set(id, (s = {}));
    return s;
  }

  /** The pre-copy session and the send in flight end (the uffds close, the stream drops). */
  #endPrecopy(id: string): void {
    const s = this.#sessions.get(id);
    s?.precopy?.stop();
    if (s) {
      delete s.precopy;
      delete s.finalSend;
    }
  }

  #rootPid(name: string): number {
    return this.#running(name).rootPid;
  }

  /** The workload's root pid and its own cgroup here; NotFound unless it runs. */
  #running(name: string): { rootPid: number; cgroup: string | null } {
    const w = this.workloads.get(name);
    if (w.state === 'exited' || w.rootPid === null) throw new FerryError(ErrorCode.NotFound, `workload "${name}" is not running on ${this.#host}`);
    return { rootPid: w.rootPid, cgroup: w.cgroup ?? null };
  }

  /** How this agent opens the stream of a migration it sends; refused without an identity. */
  #streamAuth(s: StepBase): StreamAuth {
    if (!this.stream) throw noIdentity(this.#host);
    return { migrationId: s.migrationId, peer: s.peer, credentials: this.stream.credentials, encrypt: this.stream.encrypt, ...(s.bandwidthBps ? { rateBps: s.bandwidthBps } : {}) };
  }

  /**
   * Recorded once per key like every other step: a coordinator that takes a migration over from
   * a record older than what it had already asked for (its writes failed while its NATS node went)
   * asks for preflight again after pre-copy or the freeze began here. Checked afresh, this agent's
   * own hold on the tree would read as someone else's ("already traced") and fail the migration.
   */
  preflight(s: StepBase) {
    // Before anything is frozen: without an identity this agent cannot send the workload anywhere.
    if (!this.stream) throw noIdentity(this.#host);
    return this.run.once(s, 'source', () => {
      // A checkpoint's dirty tracking would hold the memory pre-copy must track: the migration takes it.
      this.workloads.letGo(s.workload);
      const { pids } = this.engine.preflight(this.#rootPid(s.workload));
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
    });
  }

  /**
   * One pre-copy round of a live migration. Round 1 opens the session (the stream to the
   * destination's endpoint, the tracker); later rounds reuse it. A restarted agent has lost it:
   * the round fails and the migration rolls back.
   */
  precopy(s: StepBase & { round: number; throttle: boolean; endpoint?: StreamEndpoint }): Promise<RoundReport> {
    return this.run.once(s, 'source', async (m) => {
      const sess = this.#session(s.migrationId);
      if (!sess.precopy && s.round === 1 && !m.precopy) {
        if (!s.endpoint) throw new FerryError(ErrorCode.InvalidRequest, `${s.migrationId}: pre-copy round 1 needs the destination's endpoint`);
        const root = this.#rootPid(s.workload);
        m.precopy = true;
        m.netns = this.workloads.netnsOf(s.workload);
        this.run.records.save(m);
        const netConfig = await this.network.dump(m.netns);
        sess.precopy = await PrecopySource.open(root, {
          stream: this.#streamAuth(s),
          endpoint: s.endpoint,
          method: this.tracking,
          netConfig,
          dumpNetns: () => this.network.dump(m.netns ?? null),
          cgroupDir: this.workloads.get(s.workload).cgroup ?? null,
          progress: this.progress,
          postcopy: s.mode === 'postcopy' || s.mode === 'hybrid',
          onThrottle: (rec) => {
            const cur = this.run.records.get(s.migrationId);
            if (cur) this.run.records.save({ ...cur, throttle: rec });
          },
        });
      }
      const session = sess.precopy;
      if (!session) throw lost('pre-copy session', s.migrationId);
      try {
        const report = await session.round(s.round, s.throttle);
        // This step's record is saved last: it must carry what the round put on record.
        m.throttle = session.throttleRecord;
        return report;
      } catch (err) {
        // A round that failed leaves the stream in an unknown state: the migration rolls back.
        this.#endPrecopy(s.migrationId);
        throw err;
      }
    });
  }

  freeze(s: StepBase & { postcopy?: boolean }) {
    return this.run.once(s, 'source', async (m) => {
      const sess = this.#session(s.migrationId);
      // From here until the last delta is sent, the workload waits for this agent alone.
      sess.lowerPriority?.();
      const lower = raiseForSwitchover();
      sess.lowerPriority = lower;
      const session = sess.precopy;
      if (m.precopy && !session) throw lost('pre-copy session', s.migrationId);
      const { rootPid: root, cgroup } = this.#running(s.workload);
      m.netns = this.workloads.netnsOf(s.workload);
      // Dumped while the workload still runs: it costs tens of milliseconds (a live migration's last round did it).
      m.netConfig = session ? session.netConfig : await this.network.dump(m.netns);
      this.run.records.save(m);
      // Locked before the freeze: a socket in repair mode would still acknowledge what arrives.
      this.network.lock(m.netns);
      let c: Checkpoint;
      const t0 = performance.now();
      try {
        c = this.engine.begin(root, cgroup);
      } catch (err) {
        this.network.unlock(m.netns);
        lower();
        throw err;
      }
      const t1 = performance.now();
      // Frozen: the throttle goes (the injected calls of collect must not crawl under it).
      session?.unthrottle();
      try {
        c.collect();
        sess.frozeMs = { freezeMs: t1 - t0, collectMs: performance.now() - t1 };
      } catch (err) {
        this.network.unlock(m.netns);
        c.release();
        lower();
        throw err;
      }
      sess.checkpoint = c;
      // On record first, then held: from here the freeze outlives this agent (see FrozenTree.heldFreeze).
      m.held = c.tree.heldFreeze();
      const w = this.workloads.spec(s.workload);
      m.workloadCommand = w.command;
      m.resources = { limits: w.limits, requests: w.requests };
      this.run.records.save(m);
      c.tree.holdOnAgentDeath();
      this.workloads.setState(m.workload, 'frozen');
      // A live migration's last delta starts at once, not when the coordinator asks for it: the
      // transfer step then only waits for it, and its round trip leaves the downtime.
      if (session) {
        if (s.postcopy) {
          m.postcopy = true;
          this.run.records.save(m);
        }
        const backup = s.postcopy && s.postcopyBackup ? s.postcopyBackup : null;
        const sending = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#sendFinal(s.migrationId, m, c, session, s.postcopy === true, backup));
        sending.catch(() => undefined).finally(lower);
        sess.finalSend = sending;
      }
      return { tasks: c.tree.tasks.size };
    });
  }

  send(s: StepBase & { endpoint?: StreamEndpoint }) {
    return this.run.once(s, 'source', async (m) => {
      const sess = this.#session(s.migrationId);
      const c = sess.checkpoint;
      if (!c) throw lost('frozen state', s.migrationId);
      // Kept until cleanup or thaw: a retried transfer step waits for the same send.
      if (sess.finalSend) return sess.finalSend;
      if (m.precopy) throw lost('pre-copy session', s.migrationId);
      rmSync(m.imageDir, { recursive: true, force: true });
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
        sess.lowerPriority?.();
        await conn.end();
      }
    });
  }

  /** The last delta and the image over the pre-copy session's stream; the session ends with it. */
  async #sendFinal(id: string, m: LocalMigration, c: Checkpoint, session: PrecopySource, postcopy: boolean, backup: string | null): Promise<SendResult> {
    rmSync(m.imageDir, { recursive: true, force: true });
    const t = performance.now();
    const extra: Record<string, string> = { [WORKLOAD_FILE]: JSON.stringify(workloadFile(m)) };
    if (m.netConfig) extra[NETNS_FILE] = JSON.stringify(m.netConfig);
    const out = await session.final(c, m.imageDir, extra, postcopy);
    const sess = this.#sessions.get(id);
    if (sess) sess.endTracking = out.endTracking;
    else out.endTracking();
    if (out.postcopy && sess) {
      const pc = out.postcopy;
      // Durable before the transfer step answers, so before the destination may resume: from then
      // on the workload survives this host.
      if (backup) {
        try {
          writeBackup(backup, id, pc.outstandingSpans);
        } catch (err) {
          pc.stop();
          throw err;
        }
      }
      sess.postcopy = pc.run();
      sess.postcopy.catch(() => pc.stop());
    }
    if (sess?.precopy === session) delete sess.precopy;
    this.#learn(sess, c, performance.now() - t - out.report.durationMs, session.residentBytes);
    return { bytesTransferred: out.bytesTransferred, bytesOnWire: out.bytesOnWire };
  }

  /** Folds this migration's measured freeze and dump into the cost model of later predictions. */
  #learn(sess: SourceSession | undefined, c: Checkpoint, finalExtraMs: number, residentBytes: number): void {
    const f = sess?.frozeMs;
    if (!f) return;
    delete sess.frozeMs;
    const size = { processes: c.tree.pids.length, threads: c.tree.tasks.size, netns: false, residentBytes };
    costModel.learn('freeze', size, f.freezeMs);
    costModel.learn('dump', size, f.collectMs + Math.max(0, finalExtraMs));
  }

  /**
   * After commit: the workload now lives on the destination; end the frozen original. After a
   * post-copy switchover the original holds the only copy of pages the destination still lacks:
   * it ends only once its push ended (every page arrived, or the destination was lost, and the
   * workload with it: the destination's mig.postcopy says which).
   */
  cleanup(s: StepBase) {
    return this.run.once(s, 'source', async (m) => {
      // Its push ends first (every page arrived, or the destination went): the frozen original holds what it sends.
      await this.#sessions.get(s.migrationId)?.postcopy?.catch(() => undefined);
      this.#endPrecopy(s.migrationId);
      const c = this.#sessions.get(s.migrationId)?.checkpoint;
      if (c) c.kill();
      else if (m.held) killHeld(m.held);
      this.#sessions.get(s.migrationId)?.endTracking?.();
      this.#sessions.get(s.migrationId)?.lowerPriority?.();
      this.#sessions.delete(s.migrationId);
      await this.network.removeSource(m.netns ?? null);
      this.workloads.forget(m.workload);
      rmSync(m.imageDir, { recursive: true, force: true });
      // The destination has answered for post-copy (the coordinator asks it first): the backup served its turn.
      if (s.postcopyBackup) rmSync(backupDir(s.postcopyBackup, s.migrationId), { recursive: true, force: true });
      return { done: true as const };
    });
  }

  /** Rollback: the workload runs on here, as before. Fences the migration. */
  thaw(s: RollbackStep) {
    const m = this.run.record(s, 'source', true);
    if (m.fenced) return { done: true as const };
    // Tracking ends (the uffds close), the stream drops, the CPU quota goes: full speed again.
    this.#endPrecopy(s.migrationId);
    this.#sessions.get(s.migrationId)?.endTracking?.();
    this.#sessions.get(s.migrationId)?.lowerPriority?.();
    unthrottle(m.throttle);
    const c = this.#sessions.get(s.migrationId)?.checkpoint;
    this.network.unlock(m.netns ?? null);
    if (c) c.release();
    else if (m.held) {
      // The checkpoint died with the previous agent: its TCP connections are still in repair mode.
      leaveRepairAll(m.held.pids);
      releaseHeld(m.held);
    }
    this.#sessions.delete(s.migrationId);
    if (m.held) this.workloads.setState(m.workload, 'running');
    rmSync(m.imageDir, { recursive: true, force: true });
    m.fenced = true;
    this.run.records.save(m);
    return { done: true as const };
  }
}

const lost = (what: string, id: string) => new FerryError(ErrorCode.Unavailable, `the ${what} of ${id} was lost (agent restarted): roll back`);
