// Workload-level checkpoints on shared storage (docs/hpc.md): the layout of an images directory,
// the manifest beside each image, the requests that take and restore one, and the coordinator's
// record of where a checkpointed workload is. Everything read back from disk or KV goes through
// these schemas first.
import { z } from 'zod';
import { HostName, WorkloadName } from './names.ts';
import { ResourceLimits, ResourceRequests } from './resources.ts';
import { IsoTime } from './time.ts';

/**
 * An images directory holds complete snapshots `ckpt-<seq>` and a symlink `current` naming the
 * newest complete one. A snapshot is written as `.ckpt-<seq>.partial`, synced, renamed, and only
 * then does `current` move (a symlink renamed over the old one): at every instant `current` names
 * a complete image, and the one before it stays until the new one is in place.
 */
export const CURRENT_LINK = 'current';
export const SNAPSHOT_RE = /^ckpt-(\d{1,9})$/;
export const snapshotName = (seq: number): string => `ckpt-${String(seq).padStart(6, '0')}`;
/** Beside image.json in a snapshot: which workload it is, and how it was run. */
export const MANIFEST_JSON = 'workload.json';
/** Beside image.json: the workload's network namespace configuration, when it had one. */
export const NETNS_JSON = 'netns.json';
/** In the images directory (not a snapshot): the exit status `ferry launch`'s workload wrote when it ended. */
export const EXIT_STATUS_FILE = 'exit-status';

export const JobManifest = z.strictObject({
  workload: WorkloadName,
  /** The command as `ferry run`/`launch` started it (for ps). */
  command: z.array(z.string()).min(1),
  limits: ResourceLimits.default({}),
  requests: ResourceRequests.default({}),
  /** Where it ran when this snapshot was taken. */
  host: HostName,
  seq: z.number().int().nonnegative(),
  takenAt: IsoTime,
  /** The workload's address (its network namespace comes back with it), or null. */
  address: z.string().nullable(),
});
export type JobManifest = z.infer<typeof JobManifest>;

/** An absolute path: agents resolve it on their own filesystem (shared storage). */
export const ImagesDir = z.string().min(2).max(4096).refine((p) => p.startsWith('/') && !p.split('/').includes('..'), 'an absolute path without ".."');

export const WorkloadCheckpointRequest = z.strictObject({
  name: WorkloadName,
  images: ImagesDir,
  leaveRunning: z.boolean().default(false),
});
export type WorkloadCheckpointRequest = z.infer<typeof WorkloadCheckpointRequest>;

export const WorkloadRestoreRequest = z.strictObject({
  name: WorkloadName,
  images: ImagesDir,
  host: HostName.optional(),
});
export type WorkloadRestoreRequest = z.infer<typeof WorkloadRestoreRequest>;

/** Coordinator -> agent: a restore, with the addresses other workloads hold (the image's must not be one). */
export const AgentRestoreRequest = WorkloadRestoreRequest.omit({ host: true }).extend({
  takenAddresses: z.array(z.string()).default([]),
  /** That snapshot (a job's manifest names it), not `current`. */
  seq: z.number().int().positive().optional(),
});

/** Which snapshot of which images directory, on which host. */
const SnapshotRef = {
  workload: WorkloadName,
  host: HostName,
  images: z.string(),
  /** The snapshot's own directory (DIR/ckpt-N). */
  snapshot: z.string(),
  seq: z.number().int().nonnegative(),
};

export const CheckpointReply = z.strictObject({
  ...SnapshotRef,
  processes: z.number().int(),
  threads: z.number().int(),
  pagesBytes: z.number().nonnegative(),
  /** Bytes this checkpoint added to the directory's pages store (an incremental one: only pages written since the last). */
  bytesWritten: z.number().nonnegative(),
  /** Only what changed since the previous checkpoint of this directory was written. */
  incremental: z.boolean(),
  frozenMs: z.number().nonnegative(),
  totalMs: z.number().nonnegative(),
  leftRunning: z.boolean(),
  command: z.array(z.string()).min(1),
  address: z.string().nullable(),
});
export type CheckpointReply = z.infer<typeof CheckpointReply>;

export const RestoreReply = z.strictObject({
  ...SnapshotRef,
  pid: z.number().int(),
  address: z.string().nullable(),
  processes: z.number().int(),
  totalMs: z.number().nonnegative(),
});
export type RestoreReply = z.infer<typeof RestoreReply>;

/** One checkpoint or restore as `ferry status` and `history` list it, beside the migrations. */
export const WorkloadOperation = z.strictObject({
  id: z.string().regex(/^[cr]-[a-z0-9-]{4,60}$/),
  kind: z.enum(['checkpoint', 'restore']),
  workload: WorkloadName,
  host: HostName,
  images: z.string(),
  state: z.enum(['running', 'completed', 'failed']),
  /** checkpoint: the workload kept running (--leave-running). */
  leftRunning: z.boolean(),
  seq: z.number().int().nullable(),
  pagesBytes: z.number().nullable(),
  frozenMs: z.number().nullable(),
  totalMs: z.number().nullable(),
  error: z.strictObject({ code: z.string(), message: z.string() }).nullable(),
  startedAt: IsoTime,
  endedAt: IsoTime.nullable(),
});
export type WorkloadOperation = z.infer<typeof WorkloadOperation>;

/**
 * The coordinator's record of one workload's checkpoints (KV ferry_checkpoints, key = name):
 * `checkpointed` while it runs nowhere and DIR holds it, `running` once restored (or checkpointed
 * with --leave-running). Its recent operations are kept with it for status and history.
 */
export const CheckpointRecord = z.strictObject({
  name: WorkloadName,
  state: z.enum(['checkpointed', 'running']),
  host: HostName,
  images: z.string(),
  seq: z.number().int().nonnegative(),
  command: z.array(z.string()).min(1),
  address: z.string().nullable(),
  checkpointedAt: IsoTime,
  operations: z.array(WorkloadOperation).max(50),
});
export type CheckpointRecord = z.infer<typeof CheckpointRecord>;
