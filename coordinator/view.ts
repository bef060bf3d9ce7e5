// A migration's snapshot as people and scripts see it (shared/migration.ts MigrationView).
import type { MigrationView } from '../shared/migration.ts';
import { isoTime } from '../shared/time.ts';
import { PHASES, type MigrationContext } from './machine.ts';


export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  const [k, v] = Object.entries(value as Record<string, unknown>)[0] ?? ['', ''];
  const inner = stateName(v);
  return inner ? `${k}.${inner}` : k;
}

const errorView = (e: MigrationContext['error']) => (e ? { code: e.code, message: e.message, phase: e.phase, kind: e.kind } : null);

const finite = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? Math.round(v * 10) / 10 : null);

/** The pre-copy summary: the last prediction, the trackers used, why it switched over. */
function precopyView(ctx: MigrationContext): Pick<MigrationView, 'predictedDowntimeMs' | 'tracker' | 'switchover'> {
  const last = ctx.rounds.at(-1);
  const trackers = [...new Set(ctx.rounds.map((r) => r.tracker).filter((t): t is string => !!t))];
  const d = ctx.lastDecision;
  return {
    predictedDowntimeMs: finite(d?.predictedDowntimeMs ?? last?.predictedDowntimeMs),
    tracker: trackers.length === 0 ? null : trackers.length === 1 ? trackers[0]! : `mixed: ${trackers.join(', ')}`,
    switchover: d?.action === 'switchover' ? d.reason : null,
  };
}

/**
 * Post-copy, once the switchover chose it: while pages still travel the source holds the only
 * complete copy of the workload (its destination's lacks them), which status must say.
 */
function postcopyView(ctx: MigrationContext, done: boolean): MigrationView['postcopy'] {
  const d = ctx.lastDecision;
  if (d?.action !== 'switchover' || !d.postcopy || ctx.freezeAt === null) return null;
  const out = ctx.postcopy ?? null;
  const state = out ? (out.lost ? 'lost' : 'completed') : done ? 'ended' : ctx.resumeAt === null ? 'switching' : 'running';
  const completeCopy = state === 'completed' ? 'destination' : state === 'running' || state === 'switching' ? 'source' : 'none';
  return { state, completeCopy, figures: out?.figures ?? null, lost: out?.lost ?? null };
}

/**
 * `inFlight`: the round under way as its source last reported it (coordinator/progress.ts); its
 * bytes count in the totals until the round's own figures replace them.
 */
export function viewOf(ctx: MigrationContext, value: unknown, status: string, needsOperator = false, inFlight: MigrationView['inFlight'] = null): MigrationView {
  return {
    id: ctx.migrationId,
    workload: ctx.workload.name,
    from: ctx.source,
    to: ctx.destination,
    state: stateName(value),
    outcome: status === 'done' ? ctx.outcome : null,
    committed: ctx.committed,
    phases: PHASES.filter((p) => ctx.phases[p].attempts > 0).map((p) => {
      const r = ctx.phases[p];
      return { phase: p, attempts: r.attempts, startedAt: isoTime(r.startedAt), durationMs: r.startedAt !== null && r.endedAt !== null ? r.endedAt - r.startedAt : null };
    }),
    downtimeMs: ctx.downtimeMs,
    mode: ctx.precopy === false ? null : (ctx.precopy.mode ?? 'precopy'),
    ...precopyView(ctx),
    postcopy: postcopyView(ctx, status === 'done'),
    totalMs: ctx.startedAt !== null && ctx.endedAt !== null ? ctx.endedAt - ctx.startedAt : null,
    bytesTransferred: ctx.bytesTransferred + (inFlight?.bytesRaw ?? 0),
    bytesOnWire: ctx.bytesOnWire + (inFlight?.bytesOnWire ?? 0),
    rounds: ctx.rounds,
    inFlight,
    verify: ctx.verify !== false,
    verification: ctx.verification ?? null,
    error: errorView(ctx.error),
    needsOperator: needsOperator || ctx.outcome === 'failed',
    agentsLost: ctx.agentsLost.map((a) => ({ role: a.role, host: a.host, during: a.during, effect: a.effect })),
    destinationDiscardPending: ctx.rollback.destinationLeftToItself === true,
    lastRetryError: errorView(ctx.lastRetryError),
    startedAt: isoTime(ctx.startedAt),
    endedAt: isoTime(ctx.endedAt),
  };
}
