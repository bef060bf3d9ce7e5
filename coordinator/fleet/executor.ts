// Carries out a drain or a rebalance: its planned moves as ordinary migrations (the same
// statechart, records and rollback as `ferry migrate`), `parallel` at a time. Every change of the
// job is written to its record (compare-and-swap) before the next step, so a coordinator that
// takes over after a crash or a failover resumes it where it stood: a move whose migration was
// recorded is followed to its end, never started twice.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { FleetItem, FleetJob } from '../../shared/fleet.ts';
import type { Logger } from '../../shared/log.ts';
import type { MigrateRequest, MigrationView } from '../../shared/migration.ts';
import type { MigrationManager } from '../migrations.ts';
import type { WorkloadDirectory } from '../workloads.ts';
import type { FleetStores } from './stores.ts';

/** A move that failed this many times stays where it is, named with its last error. */
export const MAX_ATTEMPTS = 2;

export interface ExecutorDeps {
  stores: FleetStores;
  migrations: MigrationManager;
  workloads: WorkloadDirectory;
  log: Logger;
  /** A new destination for a move whose planned one can no longer take it (null: none fits). */
  replan: (item: FleetItem, job: FleetJob) => Promise<{ to: string; reason: string } | { reason: string }>;
  /** The migration settings of one move (live, default downtime budget, its share of the job's bandwidth cap). */
  migrateRequest: (item: FleetItem, job: FleetJob) => MigrateRequest;
}

interface Driven {
  job: FleetJob;
  revision: number;
  abort: AbortController;
  /** Record writes, in order. */
  chain: Promise<void>;
  done: Promise<FleetJob>;
}

export class FleetExecutor {
  readonly #driven = new Map<string, Driven>();

  constructor(private readonly d: ExecutorDeps) {}

  /** Records a new job and starts it; returns it as recorded. */
  async start(job: FleetJob): Promise<FleetJob> {
    const revision = await this.d.stores.jobs.create(job.id, job);
    this.#drive(job, revision);
    return job;
  }

  /** Takes over every recorded job that has not ended (after a restart or a leader change). */
  async resumeAll(): Promise<number> {
    let n = 0;
    for (const { value, revision } of await this.d.stores.jobs.all()) {
      if (value.state !== 'running' || this.#driven.has(value.id)) continue;
      this.d.log.warn({ job: value.id }, 'resuming a fleet job in flight');
      this.#drive(value, revision);
      n++;
    }
    return n;
  }

  /** The job as it stands: this coordinator's copy while it drives it, the record otherwise. */
  async view(id: string): Promise<FleetJob> {
    const mine = this.#driven.get(id);
    if (mine) return mine.job;
    const rec = await this.d.stores.jobs.get(id);
    if (!rec) throw new FerryError(ErrorCode.NotFound, `no drain or rebalance ${id}`);
    return rec.value;
  }

  async list(): Promise<FleetJob[]> {
    const recorded = (await this.d.stores.jobs.all()).map((r) => this.#driven.get(r.key)?.job ?? r.value);
    return recorded.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /** The jobs this coordinator drives now, as they stand. */
  driving(): FleetJob[] {
    return [...this.#driven.values()].map((d) => d.job);
  }

  /** Stops driving every job (deposed or shutting down); their records stay for the next leader. */
  stopAll(): void {
    for (const d of this.#driven.values()) d.abort.abort(new FerryError(ErrorCode.Cancelled, 'this coordinator no longer leads'));
    this.#driven.clear();
  }

  #drive(job: FleetJob, revision: number): void {
    const abort = new AbortController();
    const run: Driven = { job: structuredClone(job), revision, abort, chain: Promise.resolve(), done: Promise.resolve(job) };
    this.#driven.set(job.id, run);
    run.done = (async () => {
      const lanes = Array.from({ length: Math.max(1, job.parallel) }, () => this.#lane(run));
      await Promise.all(lanes);
      if (abort.signal.aborted) return run.job;
      const left = run.job.items.filter((i) => i.state !== 'moved');
      await this.#save(run, { ...run.job, state: left.length === 0 ? 'done' : 'incomplete', endedAt: new Date().toISOString() });
      this.d.log.info({ job: job.id, moved: run.job.items.length - left.length, stayed: left.length }, `${job.kind} ended`);
      this.#driven.delete(job.id);
      return run.job;
    })().catch((err: unknown) => {
      this.d.log.error({ job: job.id, err: (err as Error).message }, 'fleet job stopped');
      if (this.#driven.get(job.id) === run) this.#driven.delete(job.id);
      return run.job;
    });
  }

  /** One lane: takes the next move and carries it to its end, until none is left. */
  async #lane(run: Driven): Promise<void> {
    for (;;) {
      if (run.abort.signal.aborted) return;
      // A move recorded as migrating (its coordinator died) is followed before any new one.
      const item = run.job.items.find((i) => i.state === 'migrating' && !this.#claimed.has(key(run, i))) ?? run.job.items.find((i) => i.state === 'pending' && !this.#claimed.has(key(run, i)));
      if (!item) return;
      this.#claimed.add(key(run, item));
      try {
        await this.#move(run, item.workload);
      } finally {
        this.#claimed.delete(key(run, item));
      }
    }
  }

  readonly #claimed = new Set<string>();

  async #move(run: Driven, workload: string): Promise<void> {
    const signal = run.abort.signal;
    const current = () => run.job.items.find((i) => i.workload === workload)!;
    let item = current();
    if (item.state === 'migrating') {
      const view = item.migrationId ? await this.d.migrations.ended(item.migrationId, signal).catch(() => null) : null;
      if (view) return this.#settle(run, workload, view);
      // Recorded as started but no migration id: the coordinator died in between. Where does it run?
      const here = await this.d.workloads.find(workload).catch(() => null);
      if (here?.host === item.to) return this.#update(run, workload, { state: 'moved' });
      await this.#update(run, workload, { state: 'pending' });
      item = current();
    }
    while (!signal.aborted) {
      item = current();
      if (item.attempts >= MAX_ATTEMPTS) return;
      await this.#update(run, workload, { state: 'migrating', attempts: item.attempts + 1, migrationId: null });
      let view: MigrationView;
      try {
        const started = await this.d.migrations.start(this.d.migrateRequest(current(), run.job));
        await this.#update(run, workload, { migrationId: started.id });
        view = await this.d.migrations.ended(started.id, signal);
      } catch (err) {
        if (signal.aborted) return;
        const e = FerryError.from(err);
        // Refused before anything was frozen (destination gone or cordoned, no capacity): try another destination.
        const alt = await this.d.replan(current(), run.job);
        if ('to' in alt && current().attempts < MAX_ATTEMPTS) {
          await this.#update(run, workload, { state: 'pending', to: alt.to, reason: alt.reason });
          continue;
        }
        await this.#update(run, workload, { state: 'failed', reason: `${e.code}: ${e.message}` });
        return;
      }
      await this.#settle(run, workload, view);
      if (current().state !== 'pending') return;
    }
  }

  /** A move's migration ended: moved, or pending again (to retry), or failed with its error. */
  async #settle(run: Driven, workload: string, view: MigrationView): Promise<void> {
    const item = run.job.items.find((i) => i.workload === workload)!;
    const figures = { downtimeMs: view.downtimeMs, bytesTransferred: item.bytesTransferred + view.bytesTransferred };
    if (view.outcome === 'completed') return this.#update(run, workload, { state: 'moved', ...figures });
    const why = view.error ? `${view.error.code}: ${view.error.message}` : `migration ${view.id} ${view.outcome ?? view.state}`;
    const retry = item.attempts < MAX_ATTEMPTS && view.error?.code !== ErrorCode.Unsupported;
    await this.#update(run, workload, { ...figures, state: retry ? 'pending' : 'failed', reason: retry ? `retrying after: ${why}` : why });
  }

  #update(run: Driven, workload: string, change: Partial<FleetItem>): Promise<void> {
    const items = run.job.items.map((i) => (i.workload === workload ? { ...i, ...change } : i));
    return this.#save(run, { ...run.job, items });
  }

  /**
   * Writes the job's new state after every earlier write; a lost compare-and-swap stops this
   * coordinator driving it. A job left recorded as running by a failed last write is resumed by
   * whoever leads next, finds nothing left to move, and is recorded as ended then.
   */
  #save(run: Driven, job: FleetJob): Promise<void> {
    run.job = job;
    run.chain = run.chain.then(async () => {
      if (run.abort.signal.aborted) return;
      try {
        run.revision = await this.d.stores.jobs.update(job.id, run.job, run.revision);
      } catch (err) {
        const e = FerryError.from(err);
        this.d.log.error({ job: job.id, err: e.message }, 'cannot record fleet job');
        // Another coordinator drives it now; otherwise (KV unavailable) the next write carries this state too.
        if (e.code === ErrorCode.Conflict) run.abort.abort(e);
      }
    });
    return run.chain;
  }
}

const key = (run: Driven, i: FleetItem) => `${run.job.id}/${i.workload}`;
