// Fleet operations on the wire and in KV: cordons, the placement policy of a workload, drains
// and rebalances (their plans and their progress). Records read back from KV are validated with
// these schemas (shared/records.ts parseRecord) like any message from the network.
import { JobName } from './job-group.ts';
import { z } from 'zod';
import { MigrationId, MigrationMode } from './migration.ts';
import { HostName, WorkloadName } from './names.ts';
import { IsoTime } from './time.ts';

// --- cordons ---------------------------------------------------------------------------------

/** ferry_cordons, key = host name: the host takes no new workload and no incoming migration. */
export const CordonRecord = z.strictObject({ reason: z.string().max(500), at: IsoTime });
export type CordonRecord = z.infer<typeof CordonRecord>;

export const CordonRequest = z.strictObject({ host: HostName, reason: z.string().max(500).default('') });
export const HostRef = z.strictObject({ host: HostName });
export const CordonReply = z.strictObject({ host: HostName, cordoned: z.boolean(), changed: z.boolean() });

// --- placement policy ------------------------------------------------------------------------

/** ferry_policies, key = workload name: how placement treats it, wherever it runs. */
export const PlacementPolicy = z.strictObject({
  /** Workloads of one group with `spread` run on different hosts (anti-affinity). */
  group: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a group name: lowercase letters, digits and dashes').nullable().default(null),
  spread: z.boolean().default(false),
  /** Never moved automatically: a drain leaves it (named), a rebalance does not touch it. */
  pinned: z.boolean().default(false),
  /** The job it belongs to (`--job`): checkpointed, restored and migrated with the job's other workloads. */
  job: JobName.nullable().default(null),
});
export type PlacementPolicy = z.infer<typeof PlacementPolicy>;

// --- plans -----------------------------------------------------------------------------------

export const PlannedMove = z.strictObject({
  workload: WorkloadName,
  from: HostName,
  to: HostName,
  memoryBytes: z.number().nonnegative(),
  /** Why this destination: its score's terms, for people. */
  reason: z.string(),
});
export type PlannedMove = z.infer<typeof PlannedMove>;

export const PlannedStay = z.strictObject({ workload: WorkloadName, host: HostName, reason: z.string() });
export type PlannedStay = z.infer<typeof PlannedStay>;

// --- drains and rebalances -------------------------------------------------------------------

export const FleetJobId = z.string().regex(/^(d|r)-[a-z0-9-]{4,60}$/, 'a drain id looks like d-..., a rebalance id r-...');

export const DrainRequest = z.strictObject({
  host: HostName,
  /** Migrations at once. */
  parallel: z.number().int().min(1).max(32).default(2),
  /** Cap shared by the drain's migrations, MB/s (each of `parallel` gets its share); null: none. */
  bandwidthMBps: z.number().positive().max(100_000).nullable().default(null),
  dryRun: z.boolean().default(false),
  /** How each migration switches over (`ferry migrate --mode`). */
  mode: MigrationMode.default('precopy'),
});
export type DrainRequest = z.infer<typeof DrainRequest>;

export const RebalanceRequest = z.strictObject({
  maxMoves: z.number().int().min(0).max(1000).default(10),
  parallel: z.number().int().min(1).max(32).default(2),
  dryRun: z.boolean().default(false),
  /** How each migration switches over (`ferry migrate --mode`). */
  mode: MigrationMode.default('precopy'),
});
export type RebalanceRequest = z.infer<typeof RebalanceRequest>;

export const FleetItemState = z.enum(['pending', 'migrating', 'moved', 'stayed', 'failed']);
export const FleetItem = z.strictObject({
  workload: WorkloadName,
  from: HostName,
  /** Planned destination; null for one that stays from the start. */
  to: HostName.nullable(),
  memoryBytes: z.number().nonnegative(),
  state: FleetItemState,
  attempts: z.number().int().nonnegative(),
  migrationId: MigrationId.nullable(),
  /** Why it stayed or failed; the plan's reason for a move. */
  reason: z.string(),
  /** What the plan expects: the move's downtime (its migration's budget) and its whole duration. */
  expectedDowntimeMs: z.number().nonnegative(),
  expectedMs: z.number().nonnegative(),
  downtimeMs: z.number().nullable(),
  bytesTransferred: z.number().nonnegative(),
});
export type FleetItem = z.infer<typeof FleetItem>;

/** ferry_fleet, key = job id: a drain or rebalance, its plan and its progress; what `ferry drains` shows. */
export const FleetJob = z.strictObject({
  id: FleetJobId,
  kind: z.enum(['drain', 'rebalance']),
  /** The drained host; null for a rebalance. */
  host: HostName.nullable(),
  parallel: z.number().int().positive(),
  bandwidthMBps: z.number().positive().nullable(),
  /** How each of its migrations switches over (absent in records from before it existed: precopy). */
  mode: MigrationMode.default('precopy'),
  state: z.enum(['running', 'done', 'incomplete', 'cancelled']),
  dryRun: z.boolean(),
  items: z.array(FleetItem),
  /** Expected time of the whole job from the plan (each move's memory over the assumed stream rate, parallel lanes). */
  expectedMs: z.number().nonnegative(),
  imbalance: z.strictObject({ before: z.number(), after: z.number() }).nullable(),
  startedAt: IsoTime,
  endedAt: IsoTime.nullable(),
});
export type FleetJob = z.infer<typeof FleetJob>;

export const FleetJobRef = z.strictObject({ id: FleetJobId.optional() });

/** One line of `ferry drain|rebalance --json` progress (stderr): a move changed state, and where the whole job stands. */
export const FleetEvent = z.strictObject({
  job: FleetJobId,
  type: z.enum(['item.pending', 'item.migrating', 'item.moved', 'item.stayed', 'item.failed']),
  at: IsoTime,
  item: FleetItem,
  progress: z.strictObject({
    done: z.number().int().nonnegative(),
    total: z.number().int().nonnegative(),
    bytesDone: z.number().nonnegative(),
    bytesTotal: z.number().nonnegative(),
    etaMs: z.number().nonnegative(),
  }),
});
export type FleetEvent = z.infer<typeof FleetEvent>;
