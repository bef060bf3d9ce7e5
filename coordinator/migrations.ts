// Runs migrations: one statechart actor each, every change persisted with compare-and-swap
// before anything else learns of it, every emitted event published on NATS. A coordinator that
// takes the lead rehydrates every migration that has not ended and carries it to its end.
import { randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import type { MigrateRequest, MigrationView, TransferProgress } from '../shared/migration.ts';
import { eventOnWire, type MigrationEventWire } from '../shared/migration-events.ts';
import { encode } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';
import { migrationActorFns, type ActorDeps } from './actors.ts';
import type { ClusterView } from './cluster.ts';
import { DEFAULT_FIXED_COSTS, type ConvergenceConfig } from './convergence.ts';
import {
  MIGRATION_MACHINE_VERSION,
  createMigrationActor,
  migrationActors,
  migrationMachine,
  restoreMigrationActor,
  systemClock,
  type MigrationActor,
  type MigrationContext,
  type MigrationInput,
} from './machine.ts';
import { DowntimeMiss } from './downtime-miss.ts';
import type { Phase } from './phases.ts';
import type { MigrationRecord, MigrationStore } from './store.ts';
import { stateName, viewOf } from './view.ts';
import { takesProgress, underWay } from './progress.ts';
import type { WorkloadDirectory } from './workloads.ts';

/** The switchover rule's settings for one migration. */
function convergenceFor(req: MigrateRequest, learnedMissMs: number): ConvergenceConfig {
  return { downtimeBudgetMs: req.downtimeBudgetMs, maxRounds: req.maxRounds, fixedCosts: DEFAULT_FIXED_COSTS, ...(learnedMissMs ? { learnedMissMs } : {}), ...(req.mode !== 'precopy' ? { mode: req.mode } : {}), ...(req.postcopyBackup ? { postcopyBackup: req.postcopyBackup } : {}) };
}

/**
 * Every event of a migration this coordinator drives, once its state is durable:
 * { event: MigrationEventWire, request } (coordinator/metrics.ts counts them). Only the driving
 * coordinator publishes, so a standby never counts what the leader does.
 */
export const migrationChannel = diagnostics_channel.channel('ferry:migration');

/** How long a new migration's record is asked for while JetStream settles. */
const RECORD_RETRY_MS = 6_000;

interface Running {
  actor: MigrationActor;
  /** Set when this coordinator stops driving it: nothing more is persisted. */
  stopping: boolean;
  record: MigrationRecord;
  revision: number;
  /** Persists in order; each write waits for the one before. */
  chain: Promise<void>;
  /** Whether the last write landed: an event of a state that did not is replayed by whoever leads next. */
  durable: boolean;
  ended: Promise<MigrationView>;
  /** The source's last report of the round under way (coordinator/progress.ts); not persisted. */
  inFlight: MigrationView['inFlight'];
}


export interface ManagerDeps {
  nc: NatsConnection;
  store: MigrationStore;
  cluster: ClusterView;
  workloads: WorkloadDirectory;
  actorDeps: Omit<ActorDeps, 'store' | 'facts' | 'alive' | 'now'>;
  timeouts: Record<Phase, number>;
  log: Logger;
  /** Called when a write finds that another coordinator owns the migration: step down. */
  onDeposed: (reason: string) => void;
}

export class MigrationManager {
  readonly #running = new Map<string, Running>();
  /** What the agents' downtime predictions miss, per destination, from the migrations this leader saw end. */
  readonly #downtimeMiss = new DowntimeMiss();
  readonly #machine;

  constructor(private readonly d: ManagerDeps) {
    const fns = migrationActorFns({
      ...d.actorDeps,
      store: d.store,
      facts: (host) => d.cluster.hosts().find((h) => h.name === host)?.facts,
      alive: (host) => d.cluster.isAlive(host),
      now: () => Date.now(),
    });
    this.#machine = migrationMachine.provide({ actors: migrationActors(fns) });
    d.cluster.on('hostLost', (host) => this.#onHostLost(host));
  }

  /** Validates a request, records the migration and starts it; returns its first view. */
  async start(req: MigrateRequest): Promise<MigrationView> {
    const w = await this.d.workloads.find(req.workload);
    if (w.host === req.to) throw new FerryError(ErrorCode.InvalidRequest, `workload "${w.name}" already runs on ${req.to}`);
    this.d.workloads.requireAlive(req.to);
    this.d.workloads.requireUncordoned(req.to, 'incoming migrations');
    for (const r of this.#running.values()) {
      if (r.record.request.workload === w.name) throw new FerryError(ErrorCode.InvalidRequest, `workload "${w.name}" is already being migrated`);
    }
    if (req.postcopyBackup && req.mode === 'precopy') throw new FerryError(ErrorCode.InvalidRequest, '--postcopy-backup keeps what post-copy carries: it goes with --mode postcopy or hybrid');
    if (req.mode !== 'precopy' && !req.precopy) throw new FerryError(ErrorCode.InvalidRequest, `--mode ${req.mode} switches over from pre-copy rounds: it cannot go with stop-and-copy`);
    const id = `m-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const input: MigrationInput = {
      migrationId: id,
      source: w.host,
      destination: req.to,
      workload: { name: w.name },
      timeouts: this.d.timeouts,
      precopy: req.precopy ? convergenceFor(req, this.#downtimeMiss.forHost(req.to, w.memoryBytes)) : false,
      verify: req.verify,
      ...(req.bandwidthMBps ? { bandwidthBps: req.bandwidthMBps * 1e6 } : {}),
    };
    const actor = createMigrationActor(this.#machine, input, { clock: systemClock });
    const record: MigrationRecord = {
      machineVersion: MIGRATION_MACHINE_VERSION,
      createdAt: new Date().toISOString(),
      request: { workload: w.name, from: w.host, to: req.to, precopy: req.precopy, downtimeBudgetMs: req.downtimeBudgetMs, maxRounds: req.maxRounds },
      snapshot: actor.getPersistedSnapshot(),
      final: false,
    };
    const revision = await this.#record(id, record);
    this.d.log.info({ migration: id, workload: w.name, from: w.host, to: req.to }, 'migration started');
    return this.#run(id, actor, record, revision).view;
  }

  /**
   * Records a new migration. A NATS node restarting makes JetStream refuse for a moment: that is
   * asked again for up to 10 s. A create whose answer was lost may have been written: a record
   * of this id from this request is taken as written.
   */
  async #record(id: string, record: MigrationRecord): Promise<number> {
    const deadline = Date.now() + RECORD_RETRY_MS;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        return await this.d.store.create(id, record);
      } catch (err) {
        const e = FerryError.from(err);
        if (/exists|wrong last sequence/.test(e.message)) {
          const mine = await this.d.store.load(id);
          if (mine && mine.record.createdAt === record.createdAt) return mine.revision;
        }
        if (e.code !== ErrorCode.Unavailable || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Takes over every migration that has not ended (after a restart or a leader change). */
  async rehydrate(): Promise<number> {
    let n = 0;
    for (const id of await this.d.store.ids()) {
      if (this.#running.has(id)) continue;
      // store.load sets a bad record aside (and returns null); KV failing here fails the takeover, retried as a whole.
      const loaded = await this.d.store.load(id);
      if (!loaded || loaded.record.final) continue;
      if (loaded.record.machineVersion !== MIGRATION_MACHINE_VERSION) {
        this.d.log.error({ migration: id, version: loaded.record.machineVersion }, 'cannot rehydrate a migration written by another statechart version');
        continue;
      }
      this.d.log.warn({ migration: id }, 'rehydrating in-flight migration');
      try {
        const actor = restoreMigrationActor(this.#machine, loaded.record.snapshot, { clock: systemClock });
        this.#run(id, actor, loaded.record, loaded.revision);
        // An agent lost while no coordinator drove this migration: its loss is news to the machine.
        this.#noteLostAgents(actor);
        n++;
      } catch (err) {
        // Valid by its schema yet not a snapshot this statechart can resume: set aside like any bad record.
        this.#running.get(id)?.actor.stop();
        this.#running.delete(id);
        await this.d.store.setAside(id, `not a snapshot this statechart can resume: ${(err as Error).message}`);
      }
    }
    return n;
  }

  #run(id: string, actor: MigrationActor, record: MigrationRecord, revision: number): { view: MigrationView } {
    let resolveEnded!: (v: MigrationView) => void;
    const run: Running = { actor, stopping: false, record, revision, chain: Promise.resolve(), durable: true, ended: new Promise((r) => (resolveEnded = r)), inFlight: null };
    this.#running.set(id, run);
    const viewNow = () => this.#viewOf(run);
    actor.subscribe({
      next: (s) => {
        if (run.stopping) return;
        const final = s.status === 'done';
        const snapshot = actor.getPersistedSnapshot();
        run.chain = run.chain.then(async () => {
          try {
            run.record = { ...run.record, snapshot, final };
            run.revision = await this.d.store.update(id, run.record, run.revision);
            run.durable = true;
          } catch (err) {
            run.durable = false;
            const e = FerryError.from(err);
            this.d.log.error({ migration: id, err: e.message }, 'cannot persist migration state');
            if (e.code === ErrorCode.Conflict) this.d.onDeposed(e.message);
          }
        });
        if (final) {
          this.#learnMiss(s.context, viewOf(s.context, s.value, s.status));
          void run.chain.then(() => {
            this.#running.delete(id);
            resolveEnded(viewNow());
          });
        }
      },
      error: (err) => this.d.log.error({ migration: id, err: (err as Error).message }, 'migration actor failed'),
    });
    actor.on('*', (e) => {
      const msg = eventOnWire({ ...e, migrationId: id }, viewNow());
      const { type, data } = msg;
      // Published once the state that produced it is durable, so a watcher never sees what a
      // restarted coordinator would not know.
      void run.chain.then(() => {
        this.d.nc.publish(subjects.migrationEvents(id), encode(msg));
        if (run.durable && !run.stopping && migrationChannel.hasSubscribers) migrationChannel.publish({ event: msg, request: run.record.request });
      });
      if (type === 'phase.failed' || type === 'rollback.started' || type === 'agent.lost') this.d.log.warn({ migration: id, event: type, ...data }, 'migration event');
      else this.d.log.info({ migration: id, event: type }, 'migration event');
    });
    actor.start();
    return { view: viewNow() };
  }

  /** A completed live migration teaches what the agents' predictions miss (coordinator/downtime-miss.ts). */
  #learnMiss(ctx: MigrationContext, v: MigrationView): void {
    if (v.outcome !== 'completed' || ctx.precopy === false || v.downtimeMs === null || v.predictedDowntimeMs === null || !ctx.preflight) return;
    this.#downtimeMiss.note(ctx.destination, ctx.preflight.workloadBytes, v.predictedDowntimeMs - (ctx.precopy.learnedMissMs ?? 0), v.downtimeMs);
  }

  #onHostLost(host: string): void {
    for (const { actor } of this.#running.values()) {
      const ctx = actor.getSnapshot().context;
      if (ctx.source === host) actor.send({ type: 'AGENT_LOST', role: 'source', at: Date.now() });
      if (ctx.destination === host) actor.send({ type: 'AGENT_LOST', role: 'destination', at: Date.now() });
    }
  }

  #noteLostAgents(actor: MigrationActor): void {
    const ctx = actor.getSnapshot().context;
    if (this.d.cluster.isLost(ctx.source)) actor.send({ type: 'AGENT_LOST', role: 'source', at: Date.now() });
    if (this.d.cluster.isLost(ctx.destination)) actor.send({ type: 'AGENT_LOST', role: 'destination', at: Date.now() });
  }

  /** The migration's view once it has ended (it may be driven by this coordinator or, after a failover, rehydrated later). */
  async ended(id: string, signal?: AbortSignal): Promise<MigrationView> {
    for (;;) {
      signal?.throwIfAborted();
      const r = this.#running.get(id);
      if (r) {
        const aborted = new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
        return Promise.race([r.ended, aborted]);
      }
      const v = await this.view(id);
      if (v.outcome) return v;
      await new Promise((res) => setTimeout(res, 500));
    }
  }

  async view(id: string): Promise<MigrationView> {
    const r = this.#running.get(id);
    if (r) return this.#viewOf(r);
    const loaded = await this.d.store.load(id);
    if (!loaded) throw new FerryError(ErrorCode.NotFound, `no migration ${id}`);
    const s = loaded.record.snapshot as { context: Parameters<typeof viewOf>[0]; value: unknown; status: string };
    return viewOf(s.context, s.value, s.status);
  }

  #viewOf(r: Running): MigrationView {
    const s = r.actor.getSnapshot();
    const inFlight = r.inFlight && underWay(r.inFlight, stateName(s.value), s.context.rounds.length) ? r.inFlight : null;
    return viewOf(s.context, s.value, s.status, false, inFlight);
  }

  /**
   * A source's report of the round it is sending (coordinator/progress.ts), already checked
   * against its schema. Taken only from the migration's own source, for the round under way,
   * and never winding the figures back; then published to the migration's watchers. Returns
   * whether it was taken.
   */
  noteProgress(host: string, p: TransferProgress): boolean {
    const r = this.#running.get(p.migrationId);
    if (!r || r.stopping) return false;
    const s = r.actor.getSnapshot();
    const { migrationId, ...report } = p;
    if (!takesProgress(host, report, { source: s.context.source, state: stateName(s.value), roundsEnded: s.context.rounds.length, last: r.inFlight })) return false;
    r.inFlight = report;
    const msg: MigrationEventWire = { migrationId, type: 'transfer.progress', at: Date.now(), data: report, view: this.#viewOf(r) };
    this.d.nc.publish(subjects.migrationEvents(migrationId), encode(msg));
    return true;
  }

  /** Whether a migration of this workload is in flight here. */
  migrating(workload: string): boolean {
    return [...this.#running.values()].some((r) => r.record.request.workload === workload);
  }

  /**
   * Migrations in flight, or every recorded one with `all`, newest first. One whose record went
   * between listing and reading (set aside as bad) is left out; a record that cannot be read now
   * fails the whole answer, so that a list is never silently short.
   */
  async list(all: boolean): Promise<MigrationView[]> {
    const ids = all ? await this.d.store.ids() : [...this.#running.keys()];
    const gone = (err: unknown) => {
      if (FerryError.from(err).code === ErrorCode.NotFound) return null;
      throw err;
    };
    const views = await Promise.all(ids.map((id) => this.view(id).catch(gone)));
    return views.filter((v): v is MigrationView => v !== null).sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? ''));
  }

  async cancel(id: string): Promise<MigrationView> {
    const r = this.#running.get(id);
    if (!r) {
      const v = await this.view(id);
      throw new FerryError(ErrorCode.InvalidRequest, `migration ${id} has already ended (${v.outcome ?? v.state})`);
    }
    const refusedBefore = r.actor.getSnapshot().context.refused.length;
    r.actor.send({ type: 'CANCEL', reason: 'cancelled by user', at: Date.now() });
    const ctx = r.actor.getSnapshot().context;
    // Accepted: it rolls back. Refused (committed: it can only roll forward; or already rolling back): say so, as the record does.
    const refused = ctx.refused.length > refusedBefore ? ctx.refused.at(-1)! : null;
    if (refused || ctx.cancelRequested === null) {
      const v = await this.view(id);
      throw new FerryError(ErrorCode.InvalidRequest, `cancel refused: ${refused?.reason ?? `migration ${id} cannot be cancelled now`} (${v.state})`, {
        details: { migration: id, state: v.state },
      });
    }
    return this.view(id);
  }

  /** Migrations this coordinator drives now. */
  get inFlight(): number {
    return this.#running.size;
  }

  /** Stops driving every migration (deposed or shutting down); their records stay for the next leader. */
  stopAll(): void {
    for (const r of this.#running.values()) {
      r.stopping = true;
      r.actor.stop();
    }
    this.#running.clear();
  }
}
