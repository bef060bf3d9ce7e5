// Migrations on the wire: what the CLI asks the coordinator, what the coordinator asks each agent
// for one phase, and what a migration looks like to someone watching it.
import { z } from 'zod';
import { HostName, WorkloadName } from './names.ts';
import { IsoTime } from './time.ts';
import { Outcome, Role } from './phases.ts';
import { ResourceLimits, ResourceRequests } from './resources.ts';
import { VerifyReport } from './verify.ts';

export const MigrationId = z.string().regex(/^m-[a-z0-9-]{4,60}$/, 'a migration id looks like m-<lowercase letters and digits>');

/** An absolute path without "..", on storage both agents see. */
export const BackupDir = z.string().min(2).max(4096).refine((p) => p.startsWith('/') && !p.split('/').includes('..'), 'an absolute path without ".."');

/** How a live migration switches over (`--mode`). */
export const MigrationMode = z.enum(['precopy', 'postcopy', 'hybrid']);
export type MigrationMode = z.infer<typeof MigrationMode>;

/** What post-copy took, as the destination measured it (agent/migration/postcopy-destination.ts). */
export const PostcopyFigures = z.strictObject({
  /** Pages the destination lacked when the workload resumed. */
  pagesOutstanding: z.int().nonnegative(),
  /** Faults on a missing page that waited for the source. */
  demandFaults: z.int().nonnegative(),
  /** Faults on a page the source never had (answered with zeros at once). */
  zeroFaults: z.int().nonnegative(),
  /** From a demand fault to its page in place (ms); null: no demand fault. */
  faultLatencyMs: z.strictObject({ median: z.number().nonnegative(), p99: z.number().nonnegative(), max: z.number().nonnegative() }).nullable(),
  pagesPushed: z.int().nonnegative(),
  pagesFetched: z.int().nonnegative(),
  bytesPushed: z.number().nonnegative(),
  bytesFetched: z.number().nonnegative(),
  /** Pages the workload threw away (madvise, munmap) before theirs arrived. */
  pagesDropped: z.int().nonnegative(),
  /** Pages taken from the backup on shared storage after the source was lost (--postcopy-backup). */
  pagesFromBackup: z.int().nonnegative(),
  /** From the start of post-copy to the last page in place (ms). */
  lastPageMs: z.number().nonnegative(),
});
export type PostcopyFigures = z.infer<typeof PostcopyFigures>;

// --- CLI -> coordinator ----------------------------------------------------------------------

export const MigrateRequest = z.strictObject({
  workload: WorkloadName,
  to: HostName,
  /** Live migration: pre-copy rounds while the workload runs (warm restore); false for stop-and-copy. */
  precopy: z.boolean().default(true),
  /** Target for the downtime (ms), used by the pre-copy switchover rule. */
  downtimeBudgetMs: z.number().int().positive().max(60_000).default(100),
  /** Switch over after this many pre-copy rounds whatever the prediction. */
  maxRounds: z.number().int().min(1).max(1000).default(30),
  /** Verify the restored tree against the image before the commit point (`--no-verify` turns it off). */
  verify: z.boolean().default(true),
  /** Cap of the data stream, MB/s (a drain shares its cap among its migrations); absent: none. */
  bandwidthMBps: z.number().positive().max(100_000).optional(),
  /**
   * precopy: rounds, then the last delta with the workload frozen (throttled if it outruns the
   * link). postcopy: one round, then the workload resumes on the destination at once and fetches
   * what it lacks. hybrid: rounds while they converge, then post-copy instead of throttling.
   */
  mode: MigrationMode.default('precopy'),
  /**
   * postcopy/hybrid: a directory on storage source and destination share. Before the workload
   * resumes, the source writes there every page post-copy still has to carry, so that losing the
   * source or the link during post-copy does not lose the workload.
   */
  postcopyBackup: BackupDir.optional(),
});
export type MigrateRequest = z.infer<typeof MigrateRequest>;

export const PhaseSummary = z.strictObject({
  phase: z.string(),
  attempts: z.number().int(),
  startedAt: IsoTime.nullable(),
  durationMs: z.number().nullable(),
});

/** What a switchover costs besides the last delta (ms): the one shape, agent to coordinator to CLI. */
export const FixedCosts = z.strictObject({
  /** Freezing the workload on the source. */
  freezeMs: z.number().nonnegative(),
  /** Collecting the non-memory state (registers, fds, ...) once frozen. */
  dumpMs: z.number().nonnegative(),
  /** Restoring and resuming on the destination. */
  resumeMs: z.number().nonnegative(),
});
export type FixedCosts = z.infer<typeof FixedCosts>;

/** One pre-copy round, as the source agent measured it; the coordinator's RoundStats. */
export const RoundStatsWire = z.strictObject({
  /** 1-based round number. */
  round: z.number().int().positive(),
  pagesScanned: z.number().int().nonnegative(),
  /** Pages found dirty in this round (what a next round, or the final transfer, must send). */
  pagesDirty: z.number().int().nonnegative(),
  pagesSent: z.number().int().nonnegative(),
  /** Of the pages sent, those that were all zeros (sent as an address only). */
  pagesZero: z.number().int().nonnegative().optional(),
  bytesOnWire: z.number().nonnegative(),
  /** Uncompressed bytes / bytes on the wire (>= 1 when compression helps; 1 when off). */
  compressionRatio: z.number().nonnegative(),
  durationMs: z.number().nonnegative(),
  /** Bytes per second the workload dirties memory. */
  dirtyRateBps: z.number().nonnegative(),
  /** Bytes per second achieved on the data stream. */
  bandwidthBps: z.number().nonnegative(),
  /**
   * Whether bandwidthBps rests on enough bytes to be the link's speed; rounds of a few pages
   * measure round trips, not the link (absent: treated as measured).
   */
  linkMeasured: z.boolean().optional(),
  /** The agent's own prediction of the downtime if we switched over now (ms). */
  predictedDowntimeMs: z.number().nonnegative(),
  /** Whether the workload was throttled (CPU-limited) during this round. */
  throttled: z.boolean().optional(),
  /** Dirty tracking used: uffd-wp (userfaultfd write-protect + PAGEMAP_SCAN), hash, or soft-dirty. */
  tracker: z.string().optional(),
  /** The source's estimate of the pages dirty at the end of the round (what a switchover now would send). */
  remainingPages: z.number().int().nonnegative().optional(),
  /** What a switchover costs besides the last delta, as the agents measured it; absent: the configured costs. */
  fixedCosts: FixedCosts.optional(),
  /** CPUs the throttled workload was allowed (cgroup CPU quota) during the round. */
  throttleCpus: z.number().positive().optional(),
});
export type RoundStatsWire = z.infer<typeof RoundStatsWire>;

/**
 * The pages a source agent has sent so far in the round under way: a pre-copy round, or the last
 * delta once the tree is frozen. The source publishes it while it sends
 * (subjects.migrationProgress, at most every PROGRESS_EVERY_MS), the coordinator checks it
 * against the migration it drives and shows it in the view until the round ends.
 */
export const TransferProgress = z.strictObject({
  migrationId: MigrationId,
  /** 'precopy': a pre-copy round; 'transfer': the last delta, the tree frozen; 'postcopy': what a post-copy switchover left, the workload running on the destination. */
  phase: z.enum(['precopy', 'transfer', 'postcopy']),
  round: z.number().int().positive(),
  /** Pages the round has to send (data and zero pages), and those sent so far. */
  pagesTotal: z.number().int().nonnegative(),
  pagesDone: z.number().int().nonnegative(),
  /** Page bytes sent so far, and what the stream carried for them. */
  bytesRaw: z.number().nonnegative(),
  bytesOnWire: z.number().nonnegative(),
  /** Since the round started. */
  elapsedMs: z.number().nonnegative(),
});
export type TransferProgress = z.infer<typeof TransferProgress>;

/** How often, at most, a source publishes its progress within a round. */
export const PROGRESS_EVERY_MS = 250;

/** A migration as people and scripts see it (`ferry status --json`, `ferry migrate --json`). */
export const MigrationView = z.strictObject({
  id: MigrationId,
  workload: WorkloadName,
  from: HostName,
  to: HostName,
  /** The statechart's current state (e.g. "transfer", "rollingBack.backoff", "completed"). */
  state: z.string(),
  outcome: Outcome.nullable(),
  committed: z.boolean(),
  phases: z.array(PhaseSummary),
  /** Freeze to resume, as the coordinator saw it. */
  downtimeMs: z.number().nullable(),
  /** What the switchover rule predicted for the downtime after the last pre-copy round (null: stop-and-copy). */
  predictedDowntimeMs: z.number().nullable(),
  /** The dirty tracking pre-copy used (uffd-wp, hash, or "mixed: ..."); null for stop-and-copy. */
  tracker: z.string().nullable(),
  /** Why pre-copy switched over: budget, no-progress or round-limit; null for stop-and-copy. */
  switchover: z.string().nullable(),
  /** How it switches over (`--mode`); null for stop-and-copy. */
  mode: MigrationMode.nullable(),
  /**
   * A post-copy switchover: `switching` (frozen, not yet resumed), `running` (the workload runs on
   * the destination and pages still travel: the source holds the only complete copy),
   * `completed` (every page arrived), `lost` (the source or the link went first: the workload
   * was ended), `ended` (the migration ended without the source's report). null: no post-copy.
   */
  postcopy: z
    .strictObject({
      state: z.enum(['switching', 'running', 'completed', 'lost', 'ended']),
      /** Which host holds a complete copy of the workload's memory right now. */
      completeCopy: z.enum(['source', 'destination', 'none']),
      figures: PostcopyFigures.nullable(),
      lost: z.string().nullable(),
    })
    .nullable(),
  totalMs: z.number().nullable(),
  /** Every ended round's bytes, and the bytes of the round under way so far (inFlight). */
  bytesTransferred: z.number(),
  bytesOnWire: z.number(),
  rounds: z.array(RoundStatsWire),
  /** The round under way, as its source last reported it; null between rounds and once ended. */
  inFlight: TransferProgress.omit({ migrationId: true }).nullable(),
  /** Whether the destination verifies the restored tree before the commit, and what it found (null: not yet, or off). */
  verify: z.boolean(),
  verification: VerifyReport.nullable(),
  error: z.strictObject({ code: z.string(), message: z.string(), phase: z.string(), kind: z.string() }).nullable(),
  needsOperator: z.boolean(),
  /** Agents seen lost during the migration, and whether that rolled it back. */
  agentsLost: z.array(z.strictObject({ role: Role, host: HostName, during: z.string(), effect: z.enum(['rollback', 'none']) })),
  /**
   * Rolled back without the destination, which was lost: it discards what it holds of the
   * migration by itself when it returns (it reads the recorded abort first).
   */
  destinationDiscardPending: z.boolean(),
  /** The last error of a step retried after commit (the migration rolls forward regardless). */
  lastRetryError: z.strictObject({ code: z.string(), message: z.string(), phase: z.string(), kind: z.string() }).nullable(),
  startedAt: IsoTime.nullable(),
  endedAt: IsoTime.nullable(),
});
export type MigrationView = z.infer<typeof MigrationView>;

export const MigrationRef = z.strictObject({ id: MigrationId });
export const StatusRequest = z.strictObject({ id: MigrationId.optional(), all: z.boolean().default(false) });

// --- coordinator -> agent: one phase step --------------------------------------------------------

/** Every step names its migration and idempotency key: a replayed step has no further effect. */
export const StepBase = z.strictObject({
  migrationId: MigrationId,
  idempotencyKey: z.string().min(1),
  attempt: z.number().int().positive(),
  workload: WorkloadName,
  /** The other agent of the migration: the only identity (agent.<peer>) its data stream is taken from or sent to. */
  peer: HostName,
  /** The destination verifies the restored tree against the image before the commit (default true). */
  verify: z.boolean().optional(),
  /** The source paces its data stream to this many bytes per second (absent: as fast as it goes). */
  bandwidthBps: z.number().positive().optional(),
  /** The migration's mode (absent: precopy): post-copy needs a channel of its own from round 1. */
  mode: MigrationMode.optional(),
  /** Where the source writes what post-copy still has to carry (MigrateRequest.postcopyBackup). */
  postcopyBackup: BackupDir.optional(),
});
export type StepBase = z.infer<typeof StepBase>;

export const StreamEndpoint = z.strictObject({ host: z.string(), port: z.number().int().min(1).max(65535) });

/**
 * A file lock the source tree holds (fdinfo `lock:` lines), for the destination to check at
 * preflight whether it sees the same file locked (shared storage: agent/engine/files/lock-sharing.ts).
 */
export const HeldLock = z.strictObject({
  pid: z.number().int().positive(),
  comm: z.string().max(64),
  fd: z.number().int().nonnegative(),
  path: z.string().min(1).max(4096),
  kind: z.enum(['posix', 'ofd', 'flock', 'lease']),
  write: z.boolean(),
  start: z.number().int().nonnegative(),
  /** Inclusive; null = to the end of the file. */
  end: z.number().int().nonnegative().nullable(),
  /** The source host sees a lease or delegation on this file (anyone's): opening it elsewhere could break that. */
  leased: z.boolean(),
});
export type HeldLock = z.infer<typeof HeldLock>;

export const PreflightReply = z.strictObject({
  workloadBytes: z.number().nonnegative(),
  processes: z.number().int(),
  threads: z.number().int(),
  /** The workload's limits and requests on its source: the destination must honour them exactly. */
  limits: ResourceLimits.default({}),
  requests: ResourceRequests.default({}),
  /** The file locks the tree holds now. */
  locks: z.array(HeldLock).max(10_000).default([]),
});
/**
 * Destination preflight: can it honour the limits and take the requests, and does it see none of
 * the tree's locks held (storage shared with the source)? It makes the workload's cgroup with them.
 */
export const AdmitRequest = StepBase.extend({ limits: ResourceLimits, requests: ResourceRequests, locks: z.array(HeldLock).max(10_000).default([]) });
/** `postcopy`: the switchover leaves the last delta's anonymous pages for after the resume. */
export const FreezeRequest = StepBase.extend({ postcopy: z.boolean().optional() });
export const FreezeReply = z.strictObject({ tasks: z.number().int() });
/** The destination's post-copy, ended: what it took, or why it was lost (the workload with it). */
export const PostcopyReply = z.strictObject({ figures: PostcopyFigures.nullable(), lost: z.string().max(4096).nullable() });
export const ReceiveReply = z.strictObject({ endpoint: StreamEndpoint });
/** Without an endpoint: the stream that pre-copy opened carries the final delta. */
export const SendRequest = StepBase.extend({ endpoint: StreamEndpoint.optional() });
export const SendReply = z.strictObject({ bytesTransferred: z.number().nonnegative(), bytesOnWire: z.number().nonnegative() });
export const RestoreReply = z.strictObject({ pid: z.number().int(), verify: VerifyReport.optional() });

/** Round 1 names the destination's stream endpoint; later rounds reuse the connection. */
export const PrecopyRequest = StepBase.extend({ round: z.number().int().positive(), throttle: z.boolean(), endpoint: StreamEndpoint.optional() });
export const DoneReply = z.strictObject({ done: z.literal(true) });

// Events: shared/migration-events.ts.
