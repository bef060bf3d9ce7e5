// One agent's part of each migration phase. Every step is idempotent by its key (a replay
// returns the first result) and refused once the migration was rolled back here (fenced), so a
// late or duplicated request can never undo a decision. The workload is frozen by the engine;
// a restarted agent can still thaw or end it from the pids on record.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { IMAGE_JSON } from '../../shared/image-format.ts';
import type { StepBase } from '../../shared/migration.ts';
import { Checkpoint, preflightTree } from '../engine/checkpoint.ts';
import { killHeld, releaseHeld } from '../engine/freeze.ts';
import { listTasks, readStat } from '../engine/procfs.ts';
import { prepareImageDir, readImage, writeImage } from '../engine/image-io.ts';
import { buildProcess, createHusks, finishProcess, waitPidFree } from '../engine/restore.ts';
import type { Husk } from '../engine/husk.ts';
import { assertCompatible } from '../engine/compat.ts';
import { DataListener, connectStream, type StreamEndpoint } from '../transfer/stream.ts';
import type { NetnsConfig } from '../../shared/netns.ts';
import { leaveRepairAll } from '../engine/sockets.ts';
import type { WorkloadNetwork } from '../net/workload.ts';
import type { Workloads } from '../workloads.ts';
import { NetworkHandoff, addressOf, type LandedNetns } from './network-handoff.ts';
import { receiveImageDir, sendImageDir, type TransferStats } from './image-transfer.ts';
import { MigrationRecords, type LocalMigration } from './records.ts';

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

  readonly #network: NetworkHandoff;

  constructor(
    private readonly host: string,
    private readonly address: string,
    private readonly workloads: Workloads,
    stateDir: string,
    network?: WorkloadNetwork,
  ) {
    this.records = new MigrationRecords(stateDir);
    this.#network = new NetworkHandoff(network);
  }

  /** The local record of a migration, created on its first step; `rollingBack` lets thaw/discard repeat. */
  #record(s: StepBase, role: LocalMigration['role'], rollingBack = false): LocalMigration {
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

  /** Runs `fn` once per idempotency key; a replay returns the recorded result. */
  async #once<T>(s: StepBase, role: LocalMigration['role'], fn: (m: LocalMigration) => Promise<T> | T): Promise<T> {
    const m = this.#record(s, role);
    if (s.idempotencyKey in m.done) return m.done[s.idempotencyKey] as T;
    const result = await fn(m);
    m.done[s.idempotencyKey] = result;
    this.records.save(m);
    return result;
  }

  #rootPid(name: string): number {
    const w = this.workloads.get(name);
    if (w.state === 'exited' || w.rootPid === null) throw new FerryError(ErrorCode.NotFound, `workload "${name}" is not running on ${this.host}`);
    return w.rootPid;
  }

  // --- source ---------------------------------------------------------------------------------

  preflight(s: StepBase) {
    // Not recorded: checking twice is harmless, and nothing here changes the workload.
    const { pids } = preflightTree(this.#rootPid(s.workload));
    const w = this.workloads.get(s.workload);
    const threads = (pid: number) => {
      try {
        return listTasks(pid).length;
      } catch {
        return 0; // a short-lived child exited meanwhile
      }
    };
    return { workloadBytes: w.memoryBytes, processes: pids.length, threads: pids.reduce((n, p) => n + threads(p), 0) };
  }

  freeze(s: StepBase) {
    return this.#once(s, 'source', async (m) => {
      const root = this.#rootPid(s.workload);
      m.netns = this.workloads.netnsOf(s.workload);
      // Dumped while the workload still runs: it costs tens of milliseconds.
      m.netConfig = await this.#network.dump(m.netns);
      this.records.save(m);
      // Locked before the freeze: a socket in repair mode would still acknowledge what arrives.
      this.#network.lock(m.netns);
      let c: Checkpoint;
      try {
        c = Checkpoint.begin(root);
      } catch (err) {
        this.#network.unlock(m.netns);
        throw err;
      }
      try {
        c.collect();
      } catch (err) {
        this.#network.unlock(m.netns);
        c.release();
        throw err;
      }
      this.#checkpoints.set(s.migrationId, c);
      // On record first, then held: from here the freeze outlives this agent (see FrozenTree.heldFreeze).
      m.held = c.tree.heldFreeze();
      m.workloadCommand = this.workloads.get(s.workload).command;
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
      prepareImageDir(m.imageDir);
      c.dumpMemory(m.imageDir);
      writeImage(m.imageDir, c.image());
      // The destination registers the workload under the same command line.
      writeFileSync(path.join(m.imageDir, WORKLOAD_FILE), JSON.stringify({ command: m.workloadCommand }));
      if (m.netConfig) writeFileSync(path.join(m.imageDir, NETNS_FILE), JSON.stringify(m.netConfig));
      if (!s.endpoint) throw new FerryError(ErrorCode.InvalidRequest, `${s.migrationId}: no data stream to send on (no endpoint, no pre-copy session)`);
      const conn = await connectStream(s.endpoint, { migrationId: s.migrationId, secret: s.streamSecret });
      try {
        const stats = await sendImageDir(conn, m.imageDir);
        return { bytesTransferred: stats.bytes, bytesOnWire: stats.bytesOnWire };
      } finally {
        await conn.end();
      }
    });
  }

  /** After commit: the workload now lives on the destination; end the frozen original. */
  cleanup(s: StepBase) {
    return this.#once(s, 'source', async (m) => {
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
  thaw(s: StepBase) {
    const m = this.#record(s, 'source', true);
    if (m.fenced) return { done: true as const };
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

  async receive(s: StepBase) {
    const m = this.#record(s, 'destination');
    const listener = await DataListener.open(this.address, { migrationId: s.migrationId, secret: s.streamSecret });
    if (existsSync(path.join(m.imageDir, IMAGE_JSON))) {
      // A replayed transfer (the coordinator restarted after it): the image is here already and
      // the source's send answers from its record without connecting.
      listener.close();
      this.#receiving.set(s.migrationId, Promise.resolve({ files: 0, bytes: 0, bytesOnWire: 0, ms: 0 }));
      return { endpoint: listener.endpoint };
    }
    const receiving = listener.accept({ timeoutMs: 60_000 }).then(async (conn) => {
      try {
        return await receiveImageDir(conn, m.imageDir);
      } finally {
        conn.destroy();
      }
    });
    receiving.catch(() => undefined);
    this.#receiving.set(s.migrationId, receiving);
    return { endpoint: listener.endpoint };
  }

  /** Builds the tree from the received image and holds it stopped: it runs only after commit. */
  restore(s: StepBase) {
    return this.#once(s, 'destination', async () => {
      const receiving = this.#receiving.get(s.migrationId);
      if (receiving) await receiving;
      return { pid: await this.#build(s.migrationId) };
    });
  }

  /** Builds the held tree once (in its rebuilt network namespace); returns the host pid of its root. */
  async #build(id: string): Promise<number> {
    const held = this.#held.get(id);
    if (held) return rootHusk(held).pid;
    const m = this.records.get(id)!;
    const image = readImage(m.imageDir);
    assertCompatible(image.machine);
    if (!image.container) for (const p of image.processes) waitPidFree(p.pid);
    // The tree joins this host's cgroup for the workload, not the path it had on its source.
    const cgroup = this.workloads.cgroupFor(m.workload);
    if (cgroup) for (const p of image.processes) p.cgroup = cgroup;
    const netConfig = readJson<NetnsConfig>(path.join(m.imageDir, NETNS_FILE));
    let net: LandedNetns | null = null;
    if (netConfig) {
      m.landing = this.#network.landingName(m.workload, id);
      this.records.save(m);
      if (!m.landing) throw new FerryError(ErrorCode.Incompatible, `${this.host} has no workload network configured: it cannot take a workload with a network namespace of its own`);
      net = await this.#network.land(netConfig, m.landing);
    }
    let husks: Map<number, Husk> | null = null;
    try {
      husks = createHusks(image, m.imageDir, net ? { netns: net.handle.path } : {});
      for (const p of image.processes) buildProcess(husks.get(p.pid)!, p, m.imageDir);
    } catch (err) {
      for (const h of [...(husks?.values() ?? [])].reverse()) h.abort();
      await this.#network.discard(net, null);
      throw err;
    }
    const built: Built = { husks, image, net };
    this.#held.set(id, built);
    return rootHusk(built).pid;
  }

  /** After commit: let the restored tree run. Rebuilt from the image if the agent restarted meanwhile. */
  resume(s: StepBase) {
    return this.#once(s, 'destination', async (m) => {
      const pid = await this.#build(s.migrationId);
      const built = this.#held.get(s.migrationId)!;
      const { husks, image, net } = built;
      // Attached and announced first: connections leave repair mode in finishProcess, and their
      // window probes must find the way.
      if (net) this.#network.goLive(net);
      for (const p of image.processes) finishProcess(husks.get(p.pid)!, p);
      // Children first, so a parent never runs while a child it may wait for is still held.
      for (const p of [...image.processes].reverse()) husks.get(p.pid)!.release();
      this.#held.delete(s.migrationId);
      m.restoredPid = pid;
      // A container's init is the child of the `unshare` that holds its namespaces open.
      const shimPid = image.container ? Number(readStat(pid).f(4)) : null;
      m.workloadCommand = (JSON.parse(readFileSync(path.join(m.imageDir, WORKLOAD_FILE), 'utf8')) as { command: string[] | null }).command;
      const address = net ? addressOf(net.config) : undefined;
      this.workloads.adopt({
        name: m.workload,
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

  /** Rollback: nothing of the migration may run here. Fences the migration. */
  async discard(s: StepBase) {
    const m = this.#record(s, 'destination', true);
    if (m.fenced) return { done: true as const };
    const held = this.#held.get(s.migrationId);
    if (held) for (const h of [...held.husks.values()].reverse()) h.abort();
    this.#held.delete(s.migrationId);
    await this.#network.discard(held?.net ?? null, m.landing ?? null);
    rmSync(m.imageDir, { recursive: true, force: true });
    rmSync(`${m.imageDir}.partial`, { recursive: true, force: true });
    m.fenced = true;
    this.records.save(m);
    return { done: true as const };
  }
}

interface Built {
  husks: Map<number, Husk>;
  image: ReturnType<typeof readImage>;
  net: LandedNetns | null;
}

const rootHusk = (b: Built): Husk => b.husks.get(b.image.processes[0]!.pid)!;

function readJson<T>(file: string): T | null {
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : null;
}
