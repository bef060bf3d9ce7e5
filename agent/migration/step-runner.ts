// What every migration step shares, whichever role this agent plays: the local record (created
// on the first step, refused once fenced or asked in the other role) and once-per-key execution
// (a replay returns the recorded result, a duplicate joins the running one).
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { StepBase } from '../../shared/migration.ts';
import type { LocalMigration, MigrationRecords } from './records.ts';

/** What a rollback step needs: the coordinator sends a whole StepBase, this agent's own reconciler only these. */
export type RollbackStep = Pick<StepBase, 'migrationId' | 'workload' | 'peer'>;

export class StepRunner {
  /** Steps still running, by idempotency key: a duplicate request joins the first. */
  readonly #running = new Map<string, Promise<unknown>>();

  constructor(
    readonly host: string,
    readonly records: MigrationRecords,
  ) {}

  /** The local record of a migration, created on its first step; `rollingBack` lets thaw/discard repeat. */
  record(s: RollbackStep, role: LocalMigration['role'], rollingBack = false): LocalMigration {
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
  async once<T>(s: StepBase, role: LocalMigration['role'], fn: (m: LocalMigration) => Promise<T> | T): Promise<T> {
    const m = this.record(s, role);
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
}
