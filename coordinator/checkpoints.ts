// Workload checkpoints on shared storage, cluster-wide (docs/hpc.md): the agent that runs a
// workload writes its snapshot; an agent restores it, only while it runs nowhere; and the record
// in KV (ferry_checkpoints) says where each checkpointed workload is, so that `ps`, `status` and
// `history` can tell it when no host runs it.
import { randomBytes } from 'node:crypto';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { CheckpointRecord, CheckpointReply, RestoreReply, WorkloadCheckpointRequest, WorkloadOperation, WorkloadRestoreRequest } from '../shared/job-image.ts';
import type { WorkloadInfo, WorkloadListing } from '../shared/workload.ts';
import type { AgentClient } from './agents.ts';
import type { ClusterView } from './cluster.ts';
import type { RecordBucket } from './fleet/bucket.ts';
import type { MigrationManager } from './migrations.ts';
import type { WorkloadDirectory } from './workloads.ts';

const KEEP_OPERATIONS = 50;

type Records = RecordBucket<typeof import('../shared/job-image.ts').CheckpointRecord>;

const opId = (kind: 'checkpoint' | 'restore') => `${kind[0]}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

export class CheckpointDirectory {
  /** Operations in flight, by workload: one at a time each. */
  readonly #inFlight = new Map<string, WorkloadOperation>();

  constructor(
    private readonly records: Records,
    private readonly workloads: WorkloadDirectory,
    private readonly migrations: MigrationManager,
    private readonly cluster: ClusterView,
    private readonly agents: AgentClient,
  ) {}

  /**
   * `take`: how the agent on `host` takes it (a job's cut takes each member in steps); by default
   * one call to it. The operation is in flight, and recorded, the same either way.
   */
  async checkpoint(req: WorkloadCheckpointRequest, take?: (host: string) => Promise<CheckpointReply>): Promise<CheckpointReply> {
    const w = await this.workloads.find(req.name);
    if (w.state !== 'running') throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" is ${w.state} on ${w.host}: only a running workload can be checkpointed`);
    if (this.migrations.migrating(req.name)) throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" is being migrated: checkpoint it once the migration ends`);
    const op = this.#begin('checkpoint', req.name, w.host, req.images, req.leaveRunning);
    try {
      const r = await (take ? take(w.host) : this.agents.call(w.host, 'job.checkpoint', req));
      await this.#end(op, { state: 'completed', seq: r.seq, pagesBytes: r.pagesBytes, frozenMs: r.frozenMs, totalMs: r.totalMs }, (prev) => ({
        name: req.name,
        state: req.leaveRunning ? 'running' : 'checkpointed',
        host: w.host,
        images: req.images,
        seq: r.seq,
        command: r.command,
        address: r.address,
        checkpointedAt: new Date().toISOString(),
        operations: prev?.operations ?? [],
      }));
      return r;
    } catch (err) {
      await this.#end(op, { state: 'failed', error: err }, (prev) => prev);
      throw err;
    }
  }

  /** `seq`: that snapshot (a job's manifest names it), not the directory's current one. */
  async restore(req: WorkloadRestoreRequest, seq?: number): Promise<RestoreReply> {
    const { workloads: all, unanswered, lost } = await this.workloads.list();
    const running = all.find((w) => w.name === req.name && w.state !== 'exited');
    if (running) throw new FerryError(ErrorCode.InvalidRequest, `workload "${req.name}" is ${running.state} on ${running.host}: restoring it would run it twice (\`ferry stop ${req.name}\` first, or restore under another name)`, { details: { workload: req.name, host: running.host } });
    if (unanswered.length > 0) throw new FerryError(ErrorCode.Unavailable, `cannot check that "${req.name}" runs nowhere: ${unanswered.map((u) => u.host).join(', ')} did not answer`);
    const holding = lost.find((l) => l.workloads === null || l.workloads.some((c) => c.name === req.name));
    if (holding) throw new FerryError(ErrorCode.Unavailable, `"${req.name}" may still run on host ${holding.host}, which is lost: retry when it is back`, { details: { host: holding.host } });
    if (this.#inFlight.has(req.name)) throw new FerryError(ErrorCode.InvalidRequest, `a ${this.#inFlight.get(req.name)!.kind} of "${req.name}" is in flight`);
    const prev = (await this.records.get(req.name))?.value ?? null;
    const host = req.host ?? this.#defaultHost(prev, all);
    this.workloads.requireAlive(host);
    this.workloads.requireUncordoned(host, 'new workloads');
    const takenAddresses = [...all.filter((w) => w.state !== 'exited' && w.address).map((w) => w.address!), ...lost.flatMap((l) => (l.workloads ?? []).map((c) => c.address).filter((a): a is string => !!a))];
    const op = this.#begin('restore', req.name, host, req.images, false);
    try {
      const r = await this.agents.call(host, 'job.restore', { name: req.name, images: req.images, takenAddresses, ...(seq ? { seq } : {}) });
      await this.#end(op, { state: 'completed', seq: r.seq, totalMs: r.totalMs }, (p) => ({
        name: req.name,
        state: 'running',
        host,
        images: req.images,
        seq: r.seq,
        command: p?.command ?? [req.name],
        address: r.address,
        checkpointedAt: p?.checkpointedAt ?? new Date().toISOString(),
        operations: p?.operations ?? [],
      }));
      return r;
    } catch (err) {
      await this.#end(op, { state: 'failed', error: err }, (p) => p);
      throw err;
    }
  }

  /** Where it was checkpointed, if that host takes workloads; else the live, uncordoned host running the fewest. */
  #defaultHost(prev: CheckpointRecord | null, all: WorkloadInfo[]): string {
    const ok = this.cluster.hosts().filter((h) => h.alive && !h.cordoned);
    if (prev && ok.some((h) => h.name === prev.host)) return prev.host;
    const load = (h: string) => all.filter((w) => w.host === h && w.state !== 'exited').length;
    const best = ok.sort((a, b) => load(a.name) - load(b.name))[0];
    if (!best) throw new FerryError(ErrorCode.Unavailable, 'no live, uncordoned host to restore on');
    return best.name;
  }

  #begin(kind: 'checkpoint' | 'restore', workload: string, host: string, images: string, leftRunning: boolean): WorkloadOperation {
    if (this.#inFlight.has(workload)) throw new FerryError(ErrorCode.InvalidRequest, `a ${this.#inFlight.get(workload)!.kind} of "${workload}" is in flight`);
    const op: WorkloadOperation = { id: opId(kind), kind, workload, host, images, state: 'running', leftRunning, seq: null, pagesBytes: null, frozenMs: null, totalMs: null, error: null, startedAt: new Date().toISOString(), endedAt: null };
    this.#inFlight.set(workload, op);
    return op;
  }

  /** The operation ends: it joins the workload's record, which `next` rewrites (null: no record to keep). */
  async #end(
    op: WorkloadOperation,
    outcome: Partial<Pick<WorkloadOperation, 'seq' | 'pagesBytes' | 'frozenMs' | 'totalMs'>> & { state: 'completed' | 'failed'; error?: unknown },
    next: (prev: CheckpointRecord | null) => CheckpointRecord | null,
  ): Promise<void> {
    this.#inFlight.delete(op.workload);
    const { error, ...rest } = outcome;
    const e = error === undefined ? null : FerryError.from(error);
    const done: WorkloadOperation = { ...op, ...rest, endedAt: new Date().toISOString(), error: e ? { code: e.code, message: e.message } : null };
    const prev = (await this.records.get(op.workload))?.value ?? null;
    const rec = next(prev);
    if (!rec) return;
    await this.records.put(op.workload, { ...rec, operations: [done, ...rec.operations].slice(0, KEEP_OPERATIONS) });
  }

  /** Checkpoints and restores in flight, or every recorded one; newest first. */
  async operations(all: boolean): Promise<WorkloadOperation[]> {
    const ops = [...this.#inFlight.values()];
    if (all) for (const r of await this.records.all()) ops.push(...r.value.operations);
    return ops.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /** The cluster's listing with the checkpointed workloads that run nowhere, and where running ones keep their images. */
  async listing(base: WorkloadListing): Promise<WorkloadListing> {
    const recs = new Map((await this.records.all()).map((r) => [r.key, r.value]));
    const workloads = base.workloads.map((w) => {
      const r = recs.get(w.name);
      return r && w.state !== 'exited' ? { ...w, images: r.images } : w;
    });
    for (const r of recs.values()) {
      if (r.state !== 'checkpointed' || workloads.some((w) => w.name === r.name && w.state !== 'exited')) continue;
      workloads.push({
        name: r.name,
        host: r.host,
        state: 'checkpointed',
        rootPid: null,
        pids: [],
        memoryBytes: 0,
        command: r.command,
        startedAt: r.checkpointedAt,
        address: r.address,
        cgroup: null,
        log: '',
        limits: {},
        requests: {},
        usage: {},
        images: r.images,
      });
    }
    workloads.sort((a, b) => a.name.localeCompare(b.name));
    return { ...base, workloads };
  }

  /** Addresses of checkpointed workloads: kept for them, so that they can come back with them. */
  async reservedAddresses(): Promise<string[]> {
    return (await this.records.all()).filter((r) => r.value.state === 'checkpointed' && r.value.address).map((r) => r.value.address!);
  }

  /** `ferry stop` of a workload that runs nowhere but is checkpointed: its record goes (the images stay on disk). */
  async forget(name: string): Promise<WorkloadInfo | null> {
    const r = await this.records.get(name);
    if (!r || r.value.state !== 'checkpointed') return null;
    await this.records.delete(name);
    return { name, host: r.value.host, state: 'exited', rootPid: null, pids: [], memoryBytes: 0, command: r.value.command, startedAt: r.value.checkpointedAt, address: null, cgroup: null, log: '', limits: {}, requests: {}, usage: {}, images: r.value.images };
  }
}
