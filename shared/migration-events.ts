// The events of a migration, as they cross from the coordinator to every watcher (CLI, dashboard,
// metrics): one schema per event type, so a watcher reads `data` narrowed by `type`, never cast.
// The coordinator's machine emits exactly these (coordinator/machine.ts MigrationEmitted).
import { z } from 'zod';
import { ErrorCode } from './errors.ts';
import { MigrationId, MigrationView, RoundStatsWire, TransferProgress } from './migration.ts';
import { HostName } from './names.ts';
import { Outcome, PhaseName, PhaseOrRollback, PhaseRecord, PRE_COMMIT_PHASES, Role } from './phases.ts';

export { Outcome, PhaseRecord, Role } from './phases.ts';
import { IsoTime, isoTime } from './time.ts';

const ms = z.number().finite();

/** An error as the statechart records it: which phase raised it, and why. */
export const MigrationErrorWire = z.strictObject({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  retryable: z.boolean(),
  /** Phase (or 'rollback') that produced it. */
  phase: PhaseOrRollback,
  /** Why it was raised: an actor error, a phase timeout, a CANCEL or an AGENT_LOST. */
  kind: z.enum(['error', 'timeout', 'cancelled', 'agentLost', 'preflight', 'postcopyLost']),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type MigrationErrorWire = z.infer<typeof MigrationErrorWire>;

/**
 * What the switchover rule decided after a round. budget: the predicted downtime fits;
 * fixed-costs: it does not, but the fixed costs alone exceed the budget and the last delta adds
 * little to them; no-progress: rounds stopped shrinking the dirty set; round-limit.
 */
export const SwitchoverReason = z.enum(['budget', 'fixed-costs', 'no-progress', 'round-limit']);
export type SwitchoverReason = z.infer<typeof SwitchoverReason>;
export const ConvergenceDecision = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('continue'), predictedDowntimeMs: ms.nullable() }),
  z.strictObject({ action: z.literal('throttle'), predictedDowntimeMs: ms }),
  /** `postcopy`: the workload resumes on the destination before its last delta arrived (`--mode postcopy|hybrid`). */
  z.strictObject({ action: z.literal('switchover'), reason: SwitchoverReason, predictedDowntimeMs: ms.nullable(), postcopy: z.boolean().optional() }),
]);
export type ConvergenceDecision = z.infer<typeof ConvergenceDecision>;


/** The machine's output once final. */
export const MigrationResult = z.strictObject({
  /** The envelope's id is the one checked; this one is the machine's copy. */
  migrationId: z.string(),
  outcome: Outcome,
  committed: z.boolean(),
  error: MigrationErrorWire.nullable(),
  /** Set when outcome is 'failed': the rollback could not finish; see docs/migration-statechart.md. */
  needsOperator: z.boolean(),
  rollbackError: MigrationErrorWire.nullable(),
  downtimeMs: ms.nullable(),
  bytesTransferred: z.number().nonnegative(),
  bytesOnWire: z.number().nonnegative(),
  rounds: z.number().int().nonnegative(),
  phases: z.record(PhaseName, PhaseRecord),
});
export type MigrationResult = z.infer<typeof MigrationResult>;

/** Each event type and its data. */
export const EVENT_DATA = {
  'phase.entered': z.strictObject({ phase: PhaseOrRollback }),
  'phase.attempt': z.strictObject({ phase: PhaseOrRollback, attempt: z.number().int().positive(), round: z.number().int().positive().optional() }),
  'phase.exited': z.strictObject({ phase: PhaseName, durationMs: ms.nullable() }),
  'phase.failed': z.strictObject({ phase: PhaseOrRollback, attempt: z.number().int().nonnegative(), error: MigrationErrorWire, next: z.enum(['rollback', 'retry', 'failed']) }),
  round: z.strictObject({ stats: RoundStatsWire, decision: ConvergenceDecision }),
  'commit.recorded': z.strictObject({ revision: z.number().int().nonnegative(), committedAt: ms }),
  'rollback.started': z.strictObject({ fromPhase: z.enum(PRE_COMMIT_PHASES), cause: MigrationErrorWire }),
  'cancel.refused': z.strictObject({ during: PhaseOrRollback, reason: z.string() }),
  'agent.lost': z.strictObject({ role: Role, host: HostName, during: PhaseOrRollback, effect: z.enum(['rollback', 'none']) }),
  'migration.ended': z.strictObject({ outcome: Outcome, result: MigrationResult }),
  /** Not the machine's: `ferry migrate --json` says first which migration it started. */
  'migration.accepted': z.strictObject({ workload: z.string(), from: HostName, to: HostName }),
  /** Not the machine's: how far the round under way got, as its source reported (coordinator/progress.ts). */
  'transfer.progress': TransferProgress.omit({ migrationId: true }),
} as const;
type EventData = typeof EVENT_DATA;
export type MigrationEventType = keyof EventData;
type MachineEventType = Exclude<MigrationEventType, 'migration.accepted' | 'transfer.progress'>;

/** What the machine emits: the event's data with its type, the migration and the time (ms). */
export type MigrationEmitted = { [K in MachineEventType]: { type: K; migrationId: string; at: number } & z.infer<EventData[K]> }[MachineEventType];

function eventSchema<A extends z.ZodType>(at: A) {
  const one = <K extends MigrationEventType>(type: K) =>
    z.strictObject({
      migrationId: MigrationId,
      type: z.literal(type),
      at,
      data: EVENT_DATA[type],
      /** The view after the event, so a watcher never has to ask. */
      view: MigrationView,
    });
  return z.discriminatedUnion('type', [
    one('phase.entered'),
    one('phase.attempt'),
    one('phase.exited'),
    one('phase.failed'),
    one('round'),
    one('commit.recorded'),
    one('rollback.started'),
    one('cancel.refused'),
    one('agent.lost'),
    one('migration.ended'),
    one('migration.accepted'),
    one('transfer.progress'),
  ]);
}

/** Published on subjects.migrationEvents(id) for every phase change, round, progress report and the end. */
export const MigrationEventWire = eventSchema(z.number());
export type MigrationEventWire = z.infer<typeof MigrationEventWire>;

/**
 * An event as the CLI prints it (`watch --json`; `migrate --json` on stderr): the wire form with
 * `at` as an ISO 8601 time, like every other time ferry prints.
 */
export const MigrationEvent = eventSchema(IsoTime);
export type MigrationEvent = z.infer<typeof MigrationEvent>;
export const eventForUser = (e: MigrationEventWire): MigrationEvent => ({ ...e, at: isoTime(e.at) }) as MigrationEvent;

/** The wire form of an emitted event, with the view after it. */
export function eventOnWire(e: MigrationEmitted, view: MigrationView): MigrationEventWire {
  const { type, at, migrationId, ...data } = e;
  return { migrationId, type, at, data, view } as MigrationEventWire;
}
