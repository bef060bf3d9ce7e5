// Records that ferry reads back from storage (JetStream KV, files on disk) are validated like
// network messages: anyone who can write there, a crash halfway through a write, or an older
// ferry may have left something else. A record that fails its schema is set aside (moved where
// it no longer takes part) and reported with a RecordSetAside event naming its key; it never
// stops a coordinator or an agent. One schema per shape, here or next to the wire shapes.
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { ErrorCode, FerryError } from './errors.ts';
import { MigrationId } from './migration.ts';
import { HostName, WorkloadName } from './names.ts';
import { NetnsConfig } from './netns.ts';
import { Outcome, PhaseName, PhaseOrRollback, PhaseRecord, Role } from './phases.ts';
import { ResourceLimits, ResourceRequests, WorkloadResources } from './resources.ts';
import { describeZodError } from './rpc.ts';

const dec = new TextDecoder();

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Parses stored bytes (or text) against a schema; never throws. */
export function parseRecord<S extends z.ZodType>(schema: S, data: Uint8Array | string): Parsed<z.infer<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof data === 'string' ? data : dec.decode(data));
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
  const r = schema.safeParse(raw);
  return r.success ? { ok: true, value: r.data } : { ok: false, reason: describeZodError(r.error) };
}

// --- events ---------------------------------------------------------------------------------

/** Published on subjects.recordEvents when a record is set aside (and logged by its daemon). */
export const RecordSetAside = z.strictObject({
  type: z.literal('record.setAside'),
  /** `kv` (bucket + key) or `disk` (directory + file name). */
  store: z.enum(['kv', 'disk']),
  /** The bucket, or the directory. */
  where: z.string(),
  key: z.string(),
  reason: z.string(),
  /** Where it went: a key of the quarantine bucket, a file, or null when it was left in place. */
  movedTo: z.string().nullable(),
  /** What was done about what the record stood for (e.g. the migration was recorded aborted). */
  effect: z.string().nullable(),
  /** The daemon that found it. */
  by: z.string(),
  at: z.number(),
});
export type RecordSetAside = z.infer<typeof RecordSetAside>;

// --- coordinator: JetStream KV ----------------------------------------------------------------

const ms = z.number().finite();
const nullableMs = ms.nullable();
const ErrorRecord = z.looseObject({ code: z.string(), message: z.string(), retryable: z.boolean(), phase: z.string(), kind: z.string() });

/** xstate's state value: a state name, or nested states. */
type StateValue = string | { [k: string]: StateValue };
const StateValue: z.ZodType<StateValue> = z.lazy(() => z.union([z.string(), z.record(z.string(), StateValue)]));

/**
 * The statechart's context as persisted (coordinator/machine.ts MigrationContext). Checked for
 * what rehydration, the views and the phase actors rely on; other fields pass through unchanged
 * so that a field added to the context does not make every stored record unreadable.
 */
export const MigrationContextRecord = z.looseObject({
  migrationId: MigrationId,
  source: HostName,
  destination: HostName,
  workload: z.looseObject({ name: WorkloadName }),
  timeouts: z.record(PhaseName, z.number().positive()),
  precopy: z.union([z.literal(false), z.looseObject({ downtimeBudgetMs: z.number().positive(), learnedMissMs: z.number().min(-5_000).max(5_000).optional() })]),
  rollbackPolicy: z.looseObject({ initialMs: ms, maxMs: ms, factor: ms, timeoutMs: ms, maxAttempts: z.number().int() }),
  rollForwardPolicy: z.looseObject({ initialMs: ms, maxMs: ms, factor: ms }),
  phase: PhaseOrRollback,
  phases: z.record(PhaseName, PhaseRecord),
  startedAt: nullableMs,
  endedAt: nullableMs,
  rounds: z.array(z.looseObject({ round: z.number().int().positive() })),
  currentRound: z.strictObject({ round: z.number().int().nonnegative(), attempt: z.number().int().nonnegative() }),
  throttle: z.boolean(),
  bytesTransferred: z.number().nonnegative(),
  bytesOnWire: z.number().nonnegative(),
  freezeAt: nullableMs,
  resumeAt: nullableMs,
  downtimeMs: nullableMs,
  committed: z.boolean(),
  outcome: Outcome.nullable(),
  error: ErrorRecord.nullable(),
  rollback: z.looseObject({ fromPhase: PhaseName.nullable(), attempts: z.number().int().nonnegative(), startedAt: nullableMs, endedAt: nullableMs }),
  lastRetryError: ErrorRecord.nullable(),
  refused: z.array(z.looseObject({ type: z.string(), at: ms })),
  agentsLost: z.array(z.looseObject({ role: Role, host: HostName, during: PhaseOrRollback, effect: z.enum(['rollback', 'none']) })),
});

/** actor.getPersistedSnapshot() of a migration, after its JSON round-trip. */
export const PersistedMigrationSnapshot = z.looseObject({
  status: z.enum(['active', 'done', 'error', 'stopped']),
  value: StateValue,
  context: MigrationContextRecord,
});

/** `<id>.state` in the migrations bucket (coordinator/store.ts). */
export const MigrationStateRecord = z.strictObject({
  /** MIGRATION_MACHINE_VERSION of the snapshot's writer. */
  machineVersion: z.number().int().positive(),
  createdAt: z.string(),
  request: z.strictObject({
    workload: WorkloadName,
    from: HostName,
    to: HostName,
    precopy: z.boolean(),
    downtimeBudgetMs: z.number().positive(),
    maxRounds: z.number().int().positive().optional(),
  }),
  snapshot: PersistedMigrationSnapshot,
  /** True once the statechart reached a final state. */
  final: z.boolean(),
});
export type MigrationStateRecord = z.infer<typeof MigrationStateRecord>;

/** `<id>.decision` in the migrations bucket: the commit point, written once. */
export const DecisionRecord = z.strictObject({ decision: z.enum(['committed', 'aborted']), at: ms });
export type DecisionRecord = z.infer<typeof DecisionRecord>;

/** `coordinator` in the leases bucket. */
export const LeaseRecord = z.strictObject({ holder: z.string().min(1), expiresAt: ms });
export type LeaseRecord = z.infer<typeof LeaseRecord>;

/** Keys of the migrations bucket: `<migration id>.state` or `<migration id>.decision`. */
export function migrationKey(key: string): { id: string; kind: 'state' | 'decision' } | null {
  const m = /^(.*)\.(state|decision)$/.exec(key);
  if (!m || !MigrationId.safeParse(m[1]).success) return null;
  return { id: m[1]!, kind: m[2] as 'state' | 'decision' };
}

// --- agent: files on disk ---------------------------------------------------------------------

/** A frozen source tree (agent/engine/process/freeze.ts HeldFreeze). */
export const HeldFreezeRecord = z.strictObject({
  pids: z.array(z.number().int().positive()),
  cgroup: z.string().nullable(),
  origCgroups: z.record(z.string(), z.string()),
  cgroupRoot: z.string().nullable(),
  inPlace: z.boolean().optional(),
});

/** A restored destination tree held frozen for the commit (agent/engine/process/hold.ts HeldTree). */
export const HeldTreeRecord = z.strictObject({ pids: z.array(z.number().int().positive()), cgroup: z.string() });

/** The CPU throttle put on a workload during pre-copy (agent/migration/throttle.ts). */
export const ThrottleRecordSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('v2'), dir: z.string(), previous: z.string(), cpus: z.number().positive() }),
  z.strictObject({ kind: z.literal('v1'), dir: z.string(), back: z.string(), mount: z.string(), cpus: z.number().positive() }),
]);

/** `workload.json` beside a migration's image: the source's command line of the workload, and its limits and requests. */
export const WorkloadCommandFile = z.strictObject({ command: z.array(z.string()).min(1).nullable(), limits: ResourceLimits.optional(), requests: ResourceRequests.optional() });

/** What both roles remember of a migration. */
const LocalMigrationCommon = {
  id: MigrationId,
  workload: WorkloadName,
  peer: HostName,
  /** Set once the migration was rolled back here: later steps of it are refused. */
  fenced: z.boolean(),
  /** Results of completed steps by idempotency key: a replay returns them again. */
  done: z.record(z.string(), z.unknown()),
  imageDir: z.string().min(1),
  workloadCommand: z.array(z.string()).nullable(),
  resources: WorkloadResources.nullable().optional(),
};

/**
 * What an agent remembers of one migration (agent/migration/records.ts), `<id>.json`: one shape
 * per role, so a source's record never carries a destination's field or the other way round
 * (the fields every record is born with, `held` and `restoredPid`, are null in the other role).
 */
export const LocalMigrationRecord = z.discriminatedUnion('role', [
  z.strictObject({
    ...LocalMigrationCommon,
    role: z.literal('source'),
    /** The frozen tree (host pids, cgroups), to thaw or end it even after a restart. */
    held: HeldFreezeRecord.nullable(),
    restoredPid: z.null(),
    netns: z.string().nullable().optional(),
    netConfig: NetnsConfig.nullable().optional(),
    precopy: z.boolean().optional(),
    /** The switchover left pages for post-copy: the frozen tree holds the only copy of them. */
    postcopy: z.boolean().optional(),
    throttle: ThrottleRecordSchema.nullable().optional(),
  }),
  z.strictObject({
    ...LocalMigrationCommon,
    role: z.literal('destination'),
    held: z.null(),
    /** The restored tree's root pid, once it runs. */
    restoredPid: z.number().int().nullable(),
    landing: z.string().nullable().optional(),
    warm: z.boolean().optional(),
    heldTree: HeldTreeRecord.nullable().optional(),
    /** The held tree lacks pages its source still holds (post-copy): only this agent's session can resume it. */
    postcopy: z.boolean().optional(),
  }),
]);
export type LocalMigrationRecord = z.infer<typeof LocalMigrationRecord>;

/** A file beside an image (shared storage, or what a source sent), validated like a message: a bad one is BadImage, naming the file. */
export function readSideFile<S extends z.ZodType>(file: string, schema: S): z.infer<S> | null {
  if (!existsSync(file)) return null;
  const parsed = parseRecord(schema, readFileSync(file, 'utf8'));
  if (!parsed.ok) throw new FerryError(ErrorCode.BadImage, `${file}: ${parsed.reason}`, { details: { file } });
  return parsed.value;
}
