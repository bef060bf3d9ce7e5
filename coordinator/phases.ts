// The contracts between the migration statechart (coordinator/machine.ts) and the code that
// actually does each phase (the coordinator's NATS/KV implementation, or fakes in tests).
// Type-only on purpose: import with `import type { ... } from './phases.ts'`.
//
// Every actor is a `fromPromise(async ({ input, signal }) => output)`:
//  - it MUST honour `signal` (the machine aborts it when the phase times out, is cancelled,
//    an agent is lost, or the coordinator stops);
//  - it reports failure by throwing, preferably a FerryError (shared/errors.ts) so the machine
//    can record a stable `code`;
//  - it MUST be idempotent per `idempotencyKey`: the machine re-runs a phase after a coordinator
//    restart (rehydration) and a phase after commit on every retry, with the same key and a larger
//    `attempt`. Running the same key twice must have the effect of running it once and must return
//    the same kind of result (e.g. `freeze` on an already frozen workload succeeds).

import type { ErrorWire } from '../shared/errors.ts';
import type { MigrationMode, PostcopyFigures, RoundStatsWire } from '../shared/migration.ts';
import type { VerifyReport } from '../shared/verify.ts';

import type { Phase, PreCommitPhase } from '../shared/phases.ts';

/** The phases and the agent steps each calls: shared/phases.ts. */
export type { Phase, PreCommitPhase, PostCommitPhase } from '../shared/phases.ts';

/** What is migrated: a workload by name (same shape as `WorkloadRef` in shared/workload.ts). */
export interface WorkloadRef {
  name: string;
}

/** Which side of the migration an agent is on. */
export type { Role } from '../shared/phases.ts';

/**
 * `${migrationId}/${phase}` for a phase, `${migrationId}/precopy/${round}` for a precopy round,
 * `${migrationId}/rollback` for the rollback. The same key is used by every attempt.
 */
export type IdempotencyKey = string;

/** Fields every actor input carries. */
export interface PhaseInputBase<P extends Phase | 'rollback'> {
  migrationId: string;
  phase: P;
  /** 1 for the first run of this phase; +1 on every retry or restart after rehydration. */
  attempt: number;
  idempotencyKey: IdempotencyKey;
  /** Host names (agent identities). */
  source: string;
  destination: string;
  workload: WorkloadRef;
  /** The destination verifies the restored tree before the commit (absent: true). */
  verify?: boolean;
  /** The data stream's cap, bytes per second. */
  bandwidthBps?: number;
  /** The migration's mode (absent: precopy). */
  mode?: MigrationMode;
  /** The switchover rule chose post-copy (the freeze leaves the last delta for after the resume). */
  postcopy?: boolean;
  /** Where the source writes what post-copy still has to carry (--postcopy-backup). */
  postcopyBackup?: string;
}

// ---- preflight -------------------------------------------------------------------------------

export type PreflightInput = PhaseInputBase<'preflight'>;

/** Each check says whether it passed and, if not, why (a FerryError wire form). */
export interface PreflightCheck {
  ok: boolean;
  error?: ErrorWire;
}

export interface PreflightOutput {
  /** Source agent: can the engine carry this workload? (Unsupported otherwise.) */
  workloadSupported: PreflightCheck;
  /** Destination agent: same kernel features/XSAVE/etc? (Incompatible otherwise.) */
  destinationCompatible: PreflightCheck;
  /** Destination agent: enough free memory for the workload? (Incompatible otherwise.) */
  destinationHasMemory: PreflightCheck;
  /** Destination agent: can it enforce the workload's limits and take its requests? It made the workload's cgroup with them. */
  destinationHonoursLimits?: PreflightCheck;
  /** Resident memory of the workload as measured by the source (bytes). */
  workloadBytes: number;
}

// ---- precopy ---------------------------------------------------------------------------------

/** Statistics of one pre-copy round, produced by the source agent (its wire shape, shared/migration.ts). */
export type RoundStats = RoundStatsWire;

export interface PrecopyRoundInput extends PhaseInputBase<'precopy'> {
  /** 1-based round number; part of the idempotency key. */
  round: number;
  /** Ask the source to throttle the workload during this round (the rule said `throttle`). */
  throttle: boolean;
  /** Stats of the previous round, if any. */
  previous: RoundStats | null;
}

export type PrecopyRoundOutput = RoundStats;

// ---- freeze / transfer / restore -------------------------------------------------------------

export type FreezeInput = PhaseInputBase<'freeze'>;
export interface FreezeOutput {
  /** Number of tasks frozen (informational). */
  tasks?: number;
}

export interface TransferInput extends PhaseInputBase<'transfer'> {
  /** Number of pre-copy rounds done: 0 means a full (stop-and-copy) transfer, else a delta. */
  precopyRounds: number;
}
export interface TransferOutput {
  bytesTransferred: number;
  /** Bytes that crossed the network (after compression), if known. */
  bytesOnWire?: number;
}

export type RestoreInput = PhaseInputBase<'restore'>;
export interface RestoreOutput {
  /** pid of the restored (still stopped) root task on the destination. */
  pid?: number;
  /** What verification against the image compared (absent: verification was off). */
  verify?: VerifyReport;
}

// ---- commit ----------------------------------------------------------------------------------

export type RecordCommitInput = PhaseInputBase<'commit'>;
/**
 * recordCommit is the commit point. It does a compare-and-swap on the migration's decision key
 * (undecided -> committed). Already `committed` by this migration: success (idempotent).
 * Already `aborted`: throw FerryError(Conflict). Must not report success unless the write is durable.
 */
export interface RecordCommitOutput {
  /** KV revision of the decision record. */
  revision: number;
  /** When the decision was recorded (ms since epoch, coordinator clock). */
  committedAt: number;
}

// ---- resume / cleanup (after commit: retried, never rolled back) -----------------------------

export type ResumeInput = PhaseInputBase<'resume'>;
export interface ResumeOutput {
  /** pid of the running workload on the destination. */
  pid?: number;
}

export type CleanupInput = PhaseInputBase<'cleanup'>;
/** After a post-copy switchover: what it took, or why it was lost (the workload with it). */
export interface PostcopyOutcome {
  figures: PostcopyFigures | null;
  lost: string | null;
}
export type CleanupOutput = void | { bytesFreed?: number; postcopy?: PostcopyOutcome };

// ---- rollback --------------------------------------------------------------------------------

export interface RollbackInput extends PhaseInputBase<'rollback'> {
  /** The phase that was running when the rollback started. */
  fromPhase: PreCommitPhase;
  /** Why we roll back. */
  cause: MigrationError;
}
/**
 * rollback MUST first compare-and-swap the decision key (undecided -> aborted; already aborted is
 * fine). If it finds `committed` (a recordCommit raced it and won), it must NOT touch the agents
 * and returns `{ decision: 'committed' }`: the machine then rolls forward to resume.
 * Otherwise it tells the destination to discard (and fence the migration id, so a late restore
 * request is refused) and the source to thaw (a no-op if never frozen), and returns
 * `{ decision: 'aborted' }`. Throwing means "try again later"; the machine retries with backoff.
 */
export type RollbackOutput =
  /**
   * `destination`: whether the destination discarded its half (absent: as good as `discarded`),
   * or was lost and is left to discard it by itself when it returns (fenced by the decision).
   */
  | { decision: 'aborted'; destination?: 'discarded' | 'leftToItself' }
  | { decision: 'committed'; revision: number; committedAt: number };

// ---- the actors, by name ---------------------------------------------------------------------

/** An error as recorded in the machine's context (JSON): shared/migration-events.ts. */
import type { MigrationErrorWire as MigrationError } from '../shared/migration-events.ts';
export type { MigrationError };

/** Input/output of every actor the machine invokes, keyed by actor name (machine.provide). */
export interface MigrationActorContracts {
  preflight: { input: PreflightInput; output: PreflightOutput };
  precopyRound: { input: PrecopyRoundInput; output: PrecopyRoundOutput };
  freeze: { input: FreezeInput; output: FreezeOutput };
  transfer: { input: TransferInput; output: TransferOutput };
  restore: { input: RestoreInput; output: RestoreOutput };
  recordCommit: { input: RecordCommitInput; output: RecordCommitOutput };
  resume: { input: ResumeInput; output: ResumeOutput };
  cleanup: { input: CleanupInput; output: CleanupOutput };
  rollback: { input: RollbackInput; output: RollbackOutput };
}
export type MigrationActorName = keyof MigrationActorContracts;

/** The function you wrap with fromPromise for actor `N`. */
export type MigrationActorFn<N extends MigrationActorName> = (args: {
  input: MigrationActorContracts[N]['input'];
  signal: AbortSignal;
}) => Promise<MigrationActorContracts[N]['output']>;
