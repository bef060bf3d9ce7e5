// The migration statechart. One machine per migration, driven by the coordinator.
//
//   preflight -> precopy (rounds) -> freeze -> transfer -> restore -> commit || resume -> cleanup -> completed
//        \__________\_______________\_________\___________\__________\__> rollingBack -> rolledBack | failed
//
// `commit` is the commit point: its actor (`recordCommit`) writes the decision durably. Before it
// (including while it runs) every failure, timeout, CANCEL or AGENT_LOST rolls back; after it only
// roll-forward exists (resume/cleanup are retried with backoff, CANCEL is refused).
// See docs/migration-statechart.md for the safety argument.
//
// The machine is created with placeholder actors that throw; supply the real ones with
// `migrationMachine.provide({ actors: migrationActors({ ... }) })`.
// The whole snapshot is JSON (actor.getPersistedSnapshot()); restore with restoreMigrationActor().

import { assign, createActor, enqueueActions, fromPromise, setup, type ActorOptions } from 'xstate';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { VerifyReport } from '../shared/verify.ts';
import type { MigrationEmitted, MigrationResult, Outcome, PhaseRecord } from '../shared/migration-events.ts';
import { decideSwitchover, type ConvergenceConfig, type ConvergenceDecision } from './convergence.ts';
import type {
  CleanupInput,
  PostcopyOutcome,
  CleanupOutput,
  FreezeInput,
  FreezeOutput,
  MigrationActorContracts,
  MigrationActorFn,
  MigrationActorName,
  MigrationError,
  Phase,
  PhaseInputBase,
  PostCommitPhase,
  PrecopyRoundInput,
  PrecopyRoundOutput,
  PreCommitPhase,
  PreflightInput,
  PreflightOutput,
  RecordCommitInput,
  RecordCommitOutput,
  RestoreInput,
  RestoreOutput,
  ResumeInput,
  ResumeOutput,
  Role,
  RollbackInput,
  RollbackOutput,
  RoundStats,
  TransferInput,
  TransferOutput,
  WorkloadRef,
} from './phases.ts';

/**
 * Bump when states, context or event shapes change incompatibly; store it next to persisted
 * snapshots and refuse to restore a snapshot written by another version.
 */
export const MIGRATION_MACHINE_VERSION = 1;

import { PHASES, PRE_COMMIT_PHASES } from '../shared/phases.ts';
export { PHASES, PRE_COMMIT_PHASES };
export const POST_COMMIT_PHASES = ['resume', 'cleanup'] as const satisfies readonly PostCommitPhase[];

// ---- input, config --------------------------------------------------------------------------

export interface BackoffPolicy {
  /** Delay before the first retry (ms). */
  initialMs: number;
  /** Cap on the delay (ms). */
  maxMs: number;
  /** Multiplier per attempt. */
  factor: number;
}

export interface RollbackPolicy extends BackoffPolicy {
  /** Timeout of one rollback attempt (ms). */
  timeoutMs: number;
  /** After this many failed attempts the migration ends `failed` (needs an operator). */
  maxAttempts: number;
}

export const DEFAULT_ROLLBACK_POLICY: RollbackPolicy = { initialMs: 1_000, maxMs: 30_000, factor: 2, timeoutMs: 30_000, maxAttempts: 10 };
export const DEFAULT_ROLL_FORWARD_POLICY: BackoffPolicy = { initialMs: 1_000, maxMs: 30_000, factor: 2 };

export interface MigrationInput {
  migrationId: string;
  /** Source and destination host names (agent identities). */
  source: string;
  destination: string;
  workload: WorkloadRef;
  /** Timeout of one attempt of each phase (ms); for precopy, of one round. */
  timeouts: Record<Phase, number>;
  /** Pre-copy rounds driven by the switchover rule, or `false` for stop-and-copy. */
  precopy: ConvergenceConfig | false;
  rollback?: Partial<RollbackPolicy>;
  /** Backoff between retries of resume/cleanup (after commit; retried without limit). */
  rollForward?: Partial<BackoffPolicy>;
  /** The destination verifies the restored tree against the image before the commit (default true). */
  verify?: boolean;
  /** The source paces its data stream to this (bytes per second); absent: no cap. */
  bandwidthBps?: number;
}

// ---- context --------------------------------------------------------------------------------

/** A phase's attempts and times; the migration's outcome (shared/migration-events.ts: the same shapes go out in its events). */
export type { PhaseRecord, Outcome } from '../shared/migration-events.ts';

export interface RefusedRequest {
  type: 'CANCEL';
  at: number;
  /** State in which it arrived. */
  during: Phase | 'rollback';
  reason: string;
}

export interface AgentLostRecord {
  role: Role;
  host: string;
  at: number;
  during: Phase | 'rollback';
  /** What the machine did about it. */
  effect: 'rollback' | 'none';
}

export interface MigrationContext {
  migrationId: string;
  source: string;
  destination: string;
  workload: WorkloadRef;
  timeouts: Record<Phase, number>;
  precopy: ConvergenceConfig | false;
  rollbackPolicy: RollbackPolicy;
  rollForwardPolicy: BackoffPolicy;

  /** Phase currently (or last) running; 'rollback' while rolling back. */
  phase: Phase | 'rollback';
  phases: Record<Phase, PhaseRecord>;
  startedAt: number | null;
  endedAt: number | null;

  preflight: PreflightOutput | null;
  rounds: RoundStats[];
  /** The round being run and how many times it has been started. */
  currentRound: { round: number; attempt: number };
  lastDecision: ConvergenceDecision | null;
  /** Sticky once the rule asked for it. */
  throttle: boolean;
  /** Verification before the commit point: asked for (absent in older records: true), and what the restore step reported. */
  verify?: boolean;
  verification?: VerifyReport | null;
  /** The data stream's cap (bytes per second), when the request set one. */
  bandwidthBps?: number;
  /** After a post-copy switchover, once its cleanup ended: what it took, or why it was lost. */
  postcopy?: PostcopyOutcome | null;
  /** Raw bytes of the final transfer. */
  bytesTransferred: number;
  /** Bytes on the wire: all pre-copy rounds + the final transfer. */
  bytesOnWire: number;

  /** When the workload stopped running on the source (freeze entered) and ran again (anywhere). */
  freezeAt: number | null;
  resumeAt: number | null;
  downtimeMs: number | null;

  committed: boolean;
  commit: RecordCommitOutput | null;

  outcome: Outcome | null;
  /** What caused the rollback (null if none). */
  error: MigrationError | null;
  rollback: {
    fromPhase: PreCommitPhase | null;
    attempts: number;
    startedAt: number | null;
    endedAt: number | null;
    lastError: MigrationError | null;
    decision: RollbackOutput['decision'] | null;
    /** Set when the rollback ended without the lost destination: it discards its half by itself when it returns. */
    destinationLeftToItself?: boolean;
  };
  /** Last error of a post-commit attempt (retried). */
  lastRetryError: MigrationError | null;
  cancelRequested: { at: number; reason: string } | null;
  refused: RefusedRequest[];
  agentsLost: AgentLostRecord[];
}

/** Machine output (snapshot.output once final): shared/migration-events.ts. */
export type { MigrationResult } from '../shared/migration-events.ts';

// ---- events ---------------------------------------------------------------------------------

export type MigrationEvent =
  /** User cancel. Before commit: roll back. After commit: refused (recorded), the migration completes. */
  | { type: 'CANCEL'; reason?: string; at?: number }
  /** An agent stopped heartbeating. Before commit: roll back. After: recorded; retries continue. */
  | { type: 'AGENT_LOST'; role: Role; at?: number }
  /** Sent by restoreMigrationActor(): re-enter the current state (restart its actor and timers). */
  | { type: 'REHYDRATE' };

/** Events the machine emits (actor.on(type, fn) or actor.on('*', fn)): their schemas are shared/migration-events.ts. */
export type { MigrationEmitted } from '../shared/migration-events.ts';

// ---- helpers --------------------------------------------------------------------------------

/** A Clock with `now()`; pass it as createActor(machine, { clock: systemClock }) in production. */
export interface MigrationClock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  now(): number;
}

export const systemClock: MigrationClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
  now: () => Date.now(),
};

/**
 * Time from the actor system's clock (SimulatedClock in tests, systemClock in production). xstate's
 * default clock has no now(); only then do we fall back to the wall clock. Used for record-keeping
 * in actions only; no guard depends on time.
 */
function nowOf(system: { _clock: unknown }): number {
  const clock = system._clock as { now?: () => number };
  return typeof clock.now === 'function' ? clock.now() : Date.now();
}

export function backoffMs(policy: BackoffPolicy, attempt: number): number {
  const n = Math.max(0, attempt - 1);
  return Math.min(policy.maxMs, Math.round(policy.initialMs * policy.factor ** n));
}

export function idempotencyKey(migrationId: string, phase: Phase | 'rollback', round?: number): string {
  return round === undefined ? `${migrationId}/${phase}` : `${migrationId}/${phase}/${round}`;
}

function jsonDetails(details: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (details === undefined) return undefined;
  try {
    return JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function toMigrationError(err: unknown, phase: Phase | 'rollback', kind: MigrationError['kind']): MigrationError {
  const f = FerryError.from(err);
  const details = jsonDetails(f.details);
  return { code: f.code, message: f.message, retryable: f.retryable, phase, kind, ...(details ? { details } : {}) };
}

/** Why an event (actor error, timeout, CANCEL, AGENT_LOST) stops a phase. */
function causeOf(event: { type: string }, context: MigrationContext): MigrationError {
  const phase = context.phase;
  const e = event as { type: string; error?: unknown; reason?: string; role?: Role };
  if (e.type === 'CANCEL') {
    return { code: ErrorCode.Cancelled, message: `cancelled${e.reason ? `: ${e.reason}` : ''}`, retryable: false, phase, kind: 'cancelled' };
  }
  if (e.type === 'AGENT_LOST') {
    const host = e.role === 'destination' ? context.destination : context.source;
    return { code: ErrorCode.Unavailable, message: `${e.role ?? 'an'} agent (${host}) lost`, retryable: true, phase, kind: 'agentLost' };
  }
  if (e.type.startsWith('xstate.after.')) {
    const ms = phase === 'rollback' ? context.rollbackPolicy.timeoutMs : context.timeouts[phase];
    return { code: ErrorCode.Timeout, message: `${phase} timed out after ${ms} ms`, retryable: true, phase, kind: 'timeout' };
  }
  if (e.type.startsWith('xstate.error.')) return toMigrationError(e.error, phase, 'error');
  return { code: ErrorCode.Internal, message: `unexpected event ${e.type}`, retryable: false, phase, kind: 'error' };
}

function preflightFailure(out: PreflightOutput): MigrationError | null {
  const checks: Array<[string, PreflightOutput['workloadSupported'], ErrorCode]> = [
    ['workload not supported', out.workloadSupported, ErrorCode.Unsupported],
    ['destination not compatible', out.destinationCompatible, ErrorCode.Incompatible],
    ['destination lacks memory', out.destinationHasMemory, ErrorCode.Incompatible],
    ['destination cannot honour the limits', out.destinationHonoursLimits ?? { ok: true }, ErrorCode.Incompatible],
  ];
  for (const [what, check, code] of checks) {
    if (check.ok) continue;
    const w = check.error;
    return w
      ? { code: w.code, message: w.message, retryable: w.retryable, phase: 'preflight', kind: 'preflight', ...(w.details ? { details: w.details } : {}) }
      : { code, message: what, retryable: false, phase: 'preflight', kind: 'preflight' };
  }
  return null;
}

function baseInput<P extends Phase | 'rollback'>(context: MigrationContext, phase: P, attempt: number, round?: number): PhaseInputBase<P> {
  return {
    migrationId: context.migrationId,
    phase,
    attempt,
    idempotencyKey: idempotencyKey(context.migrationId, phase, round),
    source: context.source,
    destination: context.destination,
    workload: context.workload,
    verify: context.verify !== false,
    ...(context.bandwidthBps ? { bandwidthBps: context.bandwidthBps } : {}),
    ...(context.precopy && context.precopy.mode && context.precopy.mode !== 'precopy' ? { mode: context.precopy.mode } : {}),
    ...(context.lastDecision?.action === 'switchover' && context.lastDecision.postcopy ? { postcopy: true } : {}),
    ...(context.precopy && context.precopy.postcopyBackup ? { postcopyBackup: context.precopy.postcopyBackup } : {}),
  };
}

function result(context: MigrationContext, outcome: Outcome): MigrationResult {
  return {
    migrationId: context.migrationId,
    outcome,
    committed: context.committed,
    error: context.error,
    needsOperator: outcome === 'failed',
    rollbackError: context.rollback.lastError,
    downtimeMs: context.downtimeMs,
    bytesTransferred: context.bytesTransferred,
    bytesOnWire: context.bytesOnWire,
    rounds: context.rounds.length,
    phases: context.phases,
  };
}

function initialContext(input: MigrationInput): MigrationContext {
  for (const p of PHASES) {
    const t = input.timeouts?.[p];
    if (typeof t !== 'number' || !(t > 0)) throw new FerryError(ErrorCode.InvalidRequest, `timeouts.${p} must be a positive number of ms`);
  }
  const emptyPhase = (): PhaseRecord => ({ attempts: 0, startedAt: null, endedAt: null });
  return {
    migrationId: input.migrationId,
    source: input.source,
    destination: input.destination,
    workload: input.workload,
    timeouts: { ...input.timeouts },
    precopy: input.precopy,
    rollbackPolicy: { ...DEFAULT_ROLLBACK_POLICY, ...input.rollback },
    rollForwardPolicy: { ...DEFAULT_ROLL_FORWARD_POLICY, ...input.rollForward },
    phase: 'preflight',
    phases: Object.fromEntries(PHASES.map((p) => [p, emptyPhase()])) as Record<Phase, PhaseRecord>,
    startedAt: null,
    endedAt: null,
    preflight: null,
    rounds: [],
    currentRound: { round: 0, attempt: 0 },
    lastDecision: null,
    throttle: false,
    verify: input.verify !== false,
    ...(input.bandwidthBps ? { bandwidthBps: input.bandwidthBps } : {}),
    verification: null,
    bytesTransferred: 0,
    bytesOnWire: 0,
    freezeAt: null,
    resumeAt: null,
    downtimeMs: null,
    committed: false,
    commit: null,
    outcome: null,
    error: null,
    rollback: { fromPhase: null, attempts: 0, startedAt: null, endedAt: null, lastError: null, decision: null },
    lastRetryError: null,
    cancelRequested: null,
    refused: [],
    agentsLost: [],
  };
}

function notProvided<N extends MigrationActorName>(name: N) {
  return fromPromise<MigrationActorContracts[N]['output'], MigrationActorContracts[N]['input']>(async () => {
    throw new FerryError(ErrorCode.Internal, `migration actor '${name}' was not provided (use machine.provide)`);
  });
}

type DoneOf<N extends MigrationActorName> = { type: string; output: MigrationActorContracts[N]['output'] };
const outputOf = <N extends MigrationActorName>(event: { type: string }): MigrationActorContracts[N]['output'] => (event as DoneOf<N>).output;

// ---- the machine ----------------------------------------------------------------------------

type PhaseParams = { phase: Phase };

const TO_ROLLBACK = { target: '#migration.rollingBack', actions: 'recordCause' } as const;

export const migrationMachine = setup({
  types: {
    context: {} as MigrationContext,
    events: {} as MigrationEvent,
    input: {} as MigrationInput,
    output: {} as MigrationResult,
    emitted: {} as MigrationEmitted,
  },
  actors: {
    preflight: notProvided('preflight'),
    precopyRound: notProvided('precopyRound'),
    freeze: notProvided('freeze'),
    transfer: notProvided('transfer'),
    restore: notProvided('restore'),
    recordCommit: notProvided('recordCommit'),
    resume: notProvided('resume'),
    cleanup: notProvided('cleanup'),
    rollback: notProvided('rollback'),
  },
  delays: {
    preflightTimeout: ({ context }) => context.timeouts.preflight,
    precopyTimeout: ({ context }) => context.timeouts.precopy,
    freezeTimeout: ({ context }) => context.timeouts.freeze,
    transferTimeout: ({ context }) => context.timeouts.transfer,
    restoreTimeout: ({ context }) => context.timeouts.restore,
    commitTimeout: ({ context }) => context.timeouts.commit,
    resumeTimeout: ({ context }) => context.timeouts.resume,
    cleanupTimeout: ({ context }) => context.timeouts.cleanup,
    rollbackTimeout: ({ context }) => context.rollbackPolicy.timeoutMs,
    rollbackBackoff: ({ context }) => backoffMs(context.rollbackPolicy, context.rollback.attempts),
    rollForwardBackoff: ({ context }) =>
      backoffMs(context.rollForwardPolicy, context.phase === 'rollback' ? 1 : context.phases[context.phase].attempts),
  },
  guards: {
    postcopyDestinationLost: ({ context, event }) => {
      const e = event as MigrationEvent;
      return e.type === 'AGENT_LOST' && e.role === 'destination' && context.lastDecision?.action === 'switchover' && context.lastDecision.postcopy === true;
    },
    postcopyLost: ({ event }) => {
      const out = outputOf<'cleanup'>(event);
      return !!out && !!out.postcopy?.lost;
    },
    precopyDisabled: ({ context }) => context.precopy === false,
    switchoverDecided: ({ context }) => context.lastDecision?.action === 'switchover',
    preflightPassed: ({ event }) => preflightFailure(outputOf<'preflight'>(event)) === null,
    lostRole: ({ event }, params: { role: Role }) => (event as MigrationEvent).type === 'AGENT_LOST' && (event as Extract<MigrationEvent, { type: 'AGENT_LOST' }>).role === params.role,
    rollbackFoundCommit: ({ event }) => outputOf<'rollback'>(event).decision === 'committed',
    rollbackExhausted: ({ context }) => context.rollback.attempts >= context.rollbackPolicy.maxAttempts,
  },
  actions: {
    /** Entering a phase (once; again after rehydration). */
    beginPhase: enqueueActions(({ context, enqueue, system }, params: PhaseParams) => {
      const at = nowOf(system);
      const rec = context.phases[params.phase];
      enqueue.assign({
        phase: params.phase,
        startedAt: context.startedAt ?? at,
        phases: { ...context.phases, [params.phase]: { ...rec, startedAt: rec.startedAt ?? at, endedAt: null } },
        ...(params.phase === 'freeze' && context.freezeAt === null ? { freezeAt: at } : {}),
      });
      enqueue.emit({ type: 'phase.entered', migrationId: context.migrationId, phase: params.phase, at });
    }),
    /** Starting one actor run of a phase. */
    startAttempt: enqueueActions(({ context, enqueue, system }, params: PhaseParams) => {
      const at = nowOf(system);
      const rec = context.phases[params.phase];
      const attempt = rec.attempts + 1;
      enqueue.assign({ phase: params.phase, phases: { ...context.phases, [params.phase]: { ...rec, attempts: attempt } } });
      enqueue.emit({ type: 'phase.attempt', migrationId: context.migrationId, phase: params.phase, attempt, at });
    }),
    startRound: enqueueActions(({ context, enqueue, system }) => {
      const at = nowOf(system);
      const round = context.rounds.length + 1;
      const cur = context.currentRound.round === round ? { round, attempt: context.currentRound.attempt + 1 } : { round, attempt: 1 };
      const rec = context.phases.precopy;
      enqueue.assign({ phase: 'precopy', currentRound: cur, phases: { ...context.phases, precopy: { ...rec, attempts: rec.attempts + 1 } } });
      enqueue.emit({ type: 'phase.attempt', migrationId: context.migrationId, phase: 'precopy', attempt: cur.attempt, round, at });
    }),
    endPhase: enqueueActions(({ context, enqueue, system }, params: PhaseParams) => {
      const at = nowOf(system);
      const rec = context.phases[params.phase];
      enqueue.assign({ phases: { ...context.phases, [params.phase]: { ...rec, endedAt: at } } });
      const durationMs = rec.startedAt === null ? null : at - rec.startedAt;
      enqueue.emit({ type: 'phase.exited', migrationId: context.migrationId, phase: params.phase, at, durationMs });
    }),
    recordPreflight: assign({ preflight: ({ event }) => outputOf<'preflight'>(event) }),
    recordPreflightFailure: enqueueActions(({ context, event, enqueue, system }) => {
      const out = outputOf<'preflight'>(event);
      const error = preflightFailure(out);
      enqueue.assign({ preflight: out, error });
      if (error) {
        enqueue.emit({ type: 'phase.failed', migrationId: context.migrationId, phase: 'preflight', attempt: context.phases.preflight.attempts, error, next: 'rollback', at: nowOf(system) });
      }
    }),
    recordRound: enqueueActions(({ context, event, enqueue, system }) => {
      const stats = { ...outputOf<'precopyRound'>(event), round: context.currentRound.round };
      const rounds = [...context.rounds, stats];
      const decision: ConvergenceDecision =
        context.precopy === false ? { action: 'switchover', reason: 'round-limit', predictedDowntimeMs: null } : decideSwitchover(rounds, context.precopy);
      enqueue.assign({
        rounds,
        lastDecision: decision,
        throttle: context.throttle || decision.action === 'throttle',
        bytesOnWire: context.bytesOnWire + stats.bytesOnWire,
      });
      enqueue.emit({ type: 'round', migrationId: context.migrationId, stats, decision, at: nowOf(system) });
    }),
    recordRestore: assign({ verification: ({ event }) => outputOf<'restore'>(event).verify ?? null }),
    recordTransfer: assign(({ context, event }) => {
      const out = outputOf<'transfer'>(event);
      return { bytesTransferred: out.bytesTransferred, bytesOnWire: context.bytesOnWire + (out.bytesOnWire ?? out.bytesTransferred) };
    }),
    recordCommit: enqueueActions(({ context, event, enqueue, system }) => {
      const out = outputOf<'recordCommit'>(event);
      enqueue.assign({ committed: true, commit: out });
      enqueue.emit({ type: 'commit.recorded', migrationId: context.migrationId, revision: out.revision, committedAt: out.committedAt, at: nowOf(system) });
    }),
    recordCleanup: enqueueActions(({ context, event, enqueue }) => {
      const out = outputOf<'cleanup'>(event);
      const pc = out?.postcopy;
      if (!pc) return;
      enqueue.assign({ postcopy: pc });
      // The workload resumed on the destination and its source held pages it never got: it is gone from both.
      if (pc.lost) enqueue.assign({ error: { code: ErrorCode.Unavailable, message: pc.lost, retryable: false, phase: 'cleanup', kind: 'postcopyLost' } });
      void context;
    }),
    recordResumed: assign(({ context, system }) => {
      const at = nowOf(system);
      return { resumeAt: at, downtimeMs: context.freezeAt === null ? null : at - context.freezeAt };
    }),
    /** A phase before commit stops: actor error, timeout, CANCEL or AGENT_LOST. */
    recordCause: enqueueActions(({ context, event, enqueue, system }) => {
      const at = nowOf(system);
      const cause = causeOf(event, context);
      const e = event as MigrationEvent;
      const during = context.phase;
      if (e.type === 'CANCEL') enqueue.assign({ cancelRequested: { at: e.at ?? at, reason: e.reason ?? '' } });
      if (e.type === 'AGENT_LOST') {
        const host = e.role === 'source' ? context.source : context.destination;
        const rec: AgentLostRecord = { role: e.role, host, at: e.at ?? at, during, effect: 'rollback' };
        enqueue.assign({ agentsLost: [...context.agentsLost, rec] });
        enqueue.emit({ type: 'agent.lost', migrationId: context.migrationId, ...rec });
      }
      enqueue.assign({ error: cause });
      const attempt = during === 'rollback' ? context.rollback.attempts : context.phases[during].attempts;
      enqueue.emit({ type: 'phase.failed', migrationId: context.migrationId, phase: during, attempt, error: cause, next: 'rollback', at });
    }),
    /** A phase after commit failed or timed out: retry. */
    recordRetry: enqueueActions(({ context, event, enqueue, system }) => {
      const cause = causeOf(event, context);
      const during = context.phase;
      const attempt = during === 'rollback' ? context.rollback.attempts : context.phases[during].attempts;
      enqueue.assign({ lastRetryError: cause });
      enqueue.emit({ type: 'phase.failed', migrationId: context.migrationId, phase: during, attempt, error: cause, next: 'retry', at: nowOf(system) });
    }),
    refuseCancel: enqueueActions(({ context, event, enqueue, system }) => {
      const e = event as Extract<MigrationEvent, { type: 'CANCEL' }>;
      const at = e.at ?? nowOf(system);
      const reason = context.committed ? 'migration already committed; it can only roll forward' : 'migration is already rolling back';
      enqueue.assign({ refused: [...context.refused, { type: 'CANCEL', at, during: context.phase, reason }] });
      enqueue.emit({ type: 'cancel.refused', migrationId: context.migrationId, during: context.phase, reason, at });
    }),
    noteAgentLost: enqueueActions(({ context, event, enqueue, system }) => {
      const e = event as Extract<MigrationEvent, { type: 'AGENT_LOST' }>;
      const host = e.role === 'source' ? context.source : context.destination;
      const rec: AgentLostRecord = { role: e.role, host, at: e.at ?? nowOf(system), during: context.phase, effect: 'none' };
      enqueue.assign({ agentsLost: [...context.agentsLost, rec] });
      enqueue.emit({ type: 'agent.lost', migrationId: context.migrationId, ...rec });
    }),
    beginRollback: enqueueActions(({ context, enqueue, system }) => {
      const at = nowOf(system);
      const fromPhase = (context.phase === 'rollback' ? (context.rollback.fromPhase ?? 'preflight') : context.phase) as PreCommitPhase;
      enqueue.assign({ rollback: { ...context.rollback, fromPhase: context.rollback.fromPhase ?? fromPhase, startedAt: context.rollback.startedAt ?? at }, phase: 'rollback' });
      enqueue.emit({ type: 'phase.entered', migrationId: context.migrationId, phase: 'rollback', at });
      if (context.phase !== 'rollback') {
        const cause = context.error ?? { code: ErrorCode.Internal, message: 'rollback without a cause', retryable: false, phase: fromPhase, kind: 'error' };
        enqueue.emit({ type: 'rollback.started', migrationId: context.migrationId, fromPhase, cause, at });
      }
    }),
    startRollbackAttempt: enqueueActions(({ context, enqueue, system }) => {
      const attempt = context.rollback.attempts + 1;
      enqueue.assign({ phase: 'rollback', rollback: { ...context.rollback, attempts: attempt } });
      enqueue.emit({ type: 'phase.attempt', migrationId: context.migrationId, phase: 'rollback', attempt, at: nowOf(system) });
    }),
    recordRollbackError: enqueueActions(({ context, event, enqueue, system }, params: { next: 'retry' | 'failed' }) => {
      const error = causeOf(event, { ...context, phase: 'rollback' });
      enqueue.assign({ rollback: { ...context.rollback, lastError: error } });
      enqueue.emit({ type: 'phase.failed', migrationId: context.migrationId, phase: 'rollback', attempt: context.rollback.attempts, error, next: params.next, at: nowOf(system) });
    }),
    recordRollbackDone: assign(({ context, event, system }) => {
      const at = nowOf(system);
      const out = outputOf<'rollback'>(event);
      const thawed = context.freezeAt !== null && out.decision === 'aborted';
      const leftToItself = out.decision === 'aborted' && out.destination === 'leftToItself';
      return {
        rollback: { ...context.rollback, endedAt: at, decision: out.decision, ...(leftToItself ? { destinationLeftToItself: true } : {}) },
        ...(thawed ? { resumeAt: at, downtimeMs: at - (context.freezeAt ?? at) } : {}),
        ...(out.decision === 'committed' ? { committed: true, commit: { revision: out.revision, committedAt: out.committedAt } } : {}),
      };
    }),
    finish: enqueueActions(({ context, enqueue, system }, params: { outcome: Outcome }) => {
      const at = nowOf(system);
      const ctx: MigrationContext = { ...context, outcome: params.outcome, endedAt: at };
      enqueue.assign({ outcome: params.outcome, endedAt: at });
      enqueue.emit({ type: 'migration.ended', migrationId: context.migrationId, outcome: params.outcome, result: result(ctx, params.outcome), at });
    }),
  },
}).createMachine({
  id: 'migration',
  context: ({ input }) => initialContext(input),
  initial: 'preflight',
  output: ({ context }) => result(context, context.outcome ?? 'failed'),
  states: {
    preflight: {
      entry: [
        { type: 'beginPhase', params: { phase: 'preflight' } },
        { type: 'startAttempt', params: { phase: 'preflight' } },
      ],
      exit: { type: 'endPhase', params: { phase: 'preflight' } },
      invoke: {
        id: 'preflight',
        src: 'preflight',
        input: ({ context }): PreflightInput => baseInput(context, 'preflight', context.phases.preflight.attempts),
        onDone: [
          { guard: 'preflightPassed', target: 'precopy', actions: 'recordPreflight' },
          { target: 'rollingBack', actions: 'recordPreflightFailure' },
        ],
        onError: TO_ROLLBACK,
      },
      after: { preflightTimeout: TO_ROLLBACK },
      on: { CANCEL: TO_ROLLBACK, AGENT_LOST: TO_ROLLBACK, REHYDRATE: { target: 'preflight', reenter: true } },
    },

    precopy: {
      entry: { type: 'beginPhase', params: { phase: 'precopy' } },
      exit: { type: 'endPhase', params: { phase: 'precopy' } },
      initial: 'gate',
      on: { CANCEL: TO_ROLLBACK, AGENT_LOST: TO_ROLLBACK },
      states: {
        gate: {
          always: [{ guard: 'precopyDisabled', target: '#migration.freeze' }, { target: 'round' }],
        },
        round: {
          entry: 'startRound',
          invoke: {
            id: 'precopyRound',
            src: 'precopyRound',
            input: ({ context }): PrecopyRoundInput => ({
              ...baseInput(context, 'precopy', context.currentRound.attempt, context.currentRound.round),
              round: context.currentRound.round,
              throttle: context.throttle,
              previous: context.rounds.at(-1) ?? null,
            }),
            onDone: { target: 'deciding', actions: 'recordRound' },
            onError: TO_ROLLBACK,
          },
          after: { precopyTimeout: TO_ROLLBACK },
          on: { REHYDRATE: { target: 'round', reenter: true } },
        },
        deciding: {
          always: [{ guard: 'switchoverDecided', target: '#migration.freeze' }, { target: 'round' }],
        },
      },
    },

    freeze: {
      entry: [
        { type: 'beginPhase', params: { phase: 'freeze' } },
        { type: 'startAttempt', params: { phase: 'freeze' } },
      ],
      exit: { type: 'endPhase', params: { phase: 'freeze' } },
      invoke: {
        id: 'freeze',
        src: 'freeze',
        input: ({ context }): FreezeInput => baseInput(context, 'freeze', context.phases.freeze.attempts),
        onDone: 'transfer',
        onError: TO_ROLLBACK,
      },
      after: { freezeTimeout: TO_ROLLBACK },
      on: { CANCEL: TO_ROLLBACK, AGENT_LOST: TO_ROLLBACK, REHYDRATE: { target: 'freeze', reenter: true } },
    },

    transfer: {
      entry: [
        { type: 'beginPhase', params: { phase: 'transfer' } },
        { type: 'startAttempt', params: { phase: 'transfer' } },
      ],
      exit: { type: 'endPhase', params: { phase: 'transfer' } },
      invoke: {
        id: 'transfer',
        src: 'transfer',
        input: ({ context }): TransferInput => ({
          ...baseInput(context, 'transfer', context.phases.transfer.attempts),
          precopyRounds: context.rounds.length,
        }),
        onDone: { target: 'restore', actions: 'recordTransfer' },
        onError: TO_ROLLBACK,
      },
      after: { transferTimeout: TO_ROLLBACK },
      on: { CANCEL: TO_ROLLBACK, AGENT_LOST: TO_ROLLBACK, REHYDRATE: { target: 'transfer', reenter: true } },
    },

    restore: {
      entry: [
        { type: 'beginPhase', params: { phase: 'restore' } },
        { type: 'startAttempt', params: { phase: 'restore' } },
      ],
      exit: { type: 'endPhase', params: { phase: 'restore' } },
      invoke: {
        id: 'restore',
        src: 'restore',
        input: ({ context }): RestoreInput => baseInput(context, 'restore', context.phases.restore.attempts),
        onDone: { target: 'commit', actions: 'recordRestore' },
        onError: TO_ROLLBACK,
      },
      after: { restoreTimeout: TO_ROLLBACK },
      on: { CANCEL: TO_ROLLBACK, AGENT_LOST: TO_ROLLBACK, REHYDRATE: { target: 'restore', reenter: true } },
    },

    // The commit point. While recordCommit runs the decision is still open: anything that stops it
    // rolls back, and the rollback actor's own CAS on the decision key settles the race.
    commit: {
      entry: [
        { type: 'beginPhase', params: { phase: 'commit' } },
        { type: 'startAttempt', params: { phase: 'commit' } },
      ],
      exit: { type: 'endPhase', params: { phase: 'commit' } },
      invoke: {
        id: 'recordCommit',
        src: 'recordCommit',
        input: ({ context }): RecordCommitInput => baseInput(context, 'commit', context.phases.commit.attempts),
        onDone: { target: 'resume', actions: 'recordCommit' },
        onError: TO_ROLLBACK,
      },
      after: { commitTimeout: TO_ROLLBACK },
      on: { CANCEL: TO_ROLLBACK, AGENT_LOST: TO_ROLLBACK, REHYDRATE: { target: 'commit', reenter: true } },
    },

    // ---- after commit: roll forward only ----
    resume: {
      entry: { type: 'beginPhase', params: { phase: 'resume' } },
      exit: { type: 'endPhase', params: { phase: 'resume' } },
      initial: 'running',
      on: { CANCEL: { actions: 'refuseCancel' }, AGENT_LOST: { actions: 'noteAgentLost' } },
      states: {
        running: {
          entry: { type: 'startAttempt', params: { phase: 'resume' } },
          invoke: {
            id: 'resume',
            src: 'resume',
            input: ({ context }): ResumeInput => baseInput(context, 'resume', context.phases.resume.attempts),
            onDone: { target: '#migration.cleanup', actions: 'recordResumed' },
            onError: { target: 'backoff', actions: 'recordRetry' },
          },
          after: { resumeTimeout: { target: 'backoff', actions: 'recordRetry' } },
          on: {
            REHYDRATE: { target: 'running', reenter: true },
            // The agent doing this step died: its reply will never come, so retry without waiting out the timeout.
            AGENT_LOST: { guard: { type: 'lostRole', params: { role: 'destination' } }, target: 'backoff', actions: ['noteAgentLost', 'recordRetry'] },
          },
        },
        backoff: {
          after: { rollForwardBackoff: 'running' },
          on: { REHYDRATE: { target: 'backoff', reenter: true } },
        },
      },
    },

    cleanup: {
      entry: { type: 'beginPhase', params: { phase: 'cleanup' } },
      exit: { type: 'endPhase', params: { phase: 'cleanup' } },
      initial: 'running',
      on: { CANCEL: { actions: 'refuseCancel' }, AGENT_LOST: { actions: 'noteAgentLost' } },
      states: {
        running: {
          entry: { type: 'startAttempt', params: { phase: 'cleanup' } },
          invoke: {
            id: 'cleanup',
            src: 'cleanup',
            input: ({ context }): CleanupInput => baseInput(context, 'cleanup', context.phases.cleanup.attempts),
            onDone: [
              { guard: 'postcopyLost', target: '#migration.failed', actions: 'recordCleanup' },
              { target: '#migration.completed', actions: 'recordCleanup' },
            ],
            onError: { target: 'backoff', actions: 'recordRetry' },
          },
          after: { cleanupTimeout: { target: 'backoff', actions: 'recordRetry' } },
          on: {
            REHYDRATE: { target: 'running', reenter: true },
            // The agent doing this step died: its reply will never come, so retry without waiting out the
            // timeout (after a post-copy switchover the destination answers first, then the source).
            AGENT_LOST: [
              { guard: { type: 'lostRole', params: { role: 'source' } }, target: 'backoff', actions: ['noteAgentLost', 'recordRetry'] },
              { guard: 'postcopyDestinationLost', target: 'backoff', actions: ['noteAgentLost', 'recordRetry'] },
            ],
          },
        },
        backoff: {
          after: { rollForwardBackoff: 'running' },
          on: { REHYDRATE: { target: 'backoff', reenter: true } },
        },
      },
    },

    // ---- rollback (from any phase before commit) ----
    rollingBack: {
      entry: 'beginRollback',
      initial: 'attempting',
      on: { CANCEL: { actions: 'refuseCancel' }, AGENT_LOST: { actions: 'noteAgentLost' } },
      states: {
        attempting: {
          entry: 'startRollbackAttempt',
          invoke: {
            id: 'rollback',
            src: 'rollback',
            input: ({ context }): RollbackInput => ({
              ...baseInput(context, 'rollback', context.rollback.attempts),
              fromPhase: context.rollback.fromPhase ?? 'preflight',
              cause: context.error ?? { code: ErrorCode.Internal, message: 'rollback without a cause', retryable: false, phase: 'rollback', kind: 'error' },
            }),
            onDone: [
              // A recordCommit raced the rollback and won: the decision is `committed`, roll forward.
              { guard: 'rollbackFoundCommit', target: '#migration.resume', actions: 'recordRollbackDone' },
              { target: '#migration.rolledBack', actions: 'recordRollbackDone' },
            ],
            onError: [
              { guard: 'rollbackExhausted', target: '#migration.failed', actions: { type: 'recordRollbackError', params: { next: 'failed' } } },
              { target: 'backoff', actions: { type: 'recordRollbackError', params: { next: 'retry' } } },
            ],
          },
          on: {
            REHYDRATE: { target: 'attempting', reenter: true },
            // An agent died mid-attempt: its reply will never come; retry (thaw and discard repeat safely).
            AGENT_LOST: [
              { guard: 'rollbackExhausted', target: '#migration.failed', actions: ['noteAgentLost', { type: 'recordRollbackError', params: { next: 'failed' } }] },
              { target: 'backoff', actions: ['noteAgentLost', { type: 'recordRollbackError', params: { next: 'retry' } }] },
            ],
          },
          after: {
            rollbackTimeout: [
              { guard: 'rollbackExhausted', target: '#migration.failed', actions: { type: 'recordRollbackError', params: { next: 'failed' } } },
              { target: 'backoff', actions: { type: 'recordRollbackError', params: { next: 'retry' } } },
            ],
          },
        },
        backoff: {
          after: { rollbackBackoff: 'attempting' },
          on: { REHYDRATE: { target: 'backoff', reenter: true } },
        },
      },
    },

    completed: { type: 'final', entry: { type: 'finish', params: { outcome: 'completed' } } },
    rolledBack: { type: 'final', entry: { type: 'finish', params: { outcome: 'rolledBack' } } },
    // The rollback could not finish within rollbackPolicy.maxAttempts: an operator must act.
    failed: { type: 'final', entry: { type: 'finish', params: { outcome: 'failed' } } },
  },
});

export type MigrationMachine = typeof migrationMachine;

// ---- wiring helpers -------------------------------------------------------------------------

export type MigrationActorFns = { [N in MigrationActorName]: MigrationActorFn<N> };

/**
 * Wrap plain async functions as the machine's actors:
 *   migrationMachine.provide({ actors: migrationActors({ preflight: async ({ input, signal }) => ..., ... }) })
 */
export function migrationActors<T extends Partial<MigrationActorFns>>(fns: T): { [N in keyof T & MigrationActorName]: ReturnType<typeof notProvided<N>> } {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(fns)) {
    if (fn === undefined) continue;
    const f = fn as (args: { input: unknown; signal: AbortSignal }) => Promise<unknown>;
    out[name] = fromPromise(({ input, signal }) => f({ input, signal }));
  }
  return out as { [N in keyof T & MigrationActorName]: ReturnType<typeof notProvided<N>> };
}

export type MigrationActorOptions = Omit<ActorOptions<MigrationMachine>, 'snapshot' | 'input'>;

/** Start a new migration (call .start() after attaching listeners). */
export function createMigrationActor(machine: MigrationMachine, input: MigrationInput, options: MigrationActorOptions = {}) {
  return createActor(machine, { ...options, input });
}

/**
 * Rebuild a migration actor from `actor.getPersistedSnapshot()` (after a JSON round-trip, e.g. from KV).
 *
 * xstate restarts an invoked promise actor from its persisted input on restore, but does not
 * persist delayed transitions (`after`: phase timeouts, backoffs) and does not re-run entry actions.
 * So we drop the persisted children and queue a REHYDRATE event that re-enters the current state:
 * its actor is started again (attempt + 1, same idempotency key) and its timers are re-armed.
 * The returned actor is not started: attach listeners, then call .start().
 */
export function restoreMigrationActor(machine: MigrationMachine, persisted: unknown, options: MigrationActorOptions = {}) {
  if (persisted === null || typeof persisted !== 'object' || !('context' in persisted) || !('value' in persisted)) {
    throw new FerryError(ErrorCode.BadMessage, 'not a persisted migration snapshot');
  }
  const snap = persisted as { status?: string; children?: unknown };
  const snapshot = { ...snap, children: {} } as unknown as ActorOptions<MigrationMachine>['snapshot'];
  // `input` is ignored by xstate when a snapshot is given.
  const actor = createActor(machine, { ...options, snapshot, input: undefined as unknown as MigrationInput });
  if (snap.status === 'active') actor.send({ type: 'REHYDRATE' });
  return actor;
}

export type MigrationActor = ReturnType<typeof createMigrationActor>;

/** Convenience for reports: the top-level state name (e.g. 'freeze', 'rollingBack', 'completed'). */
export function topState(value: unknown): string {
  return typeof value === 'string' ? value : Object.keys(value as object)[0] ?? '';
}

// Re-exported so callers need only this module for the types they pass around.
export type {
  CleanupOutput,
  ConvergenceConfig,
  ConvergenceDecision,
  FreezeOutput,
  PrecopyRoundOutput,
  PreflightOutput,
  RecordCommitOutput,
  RestoreOutput,
  ResumeOutput,
  RollbackOutput,
  TransferOutput,
};
