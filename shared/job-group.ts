// Jobs whose workloads span hosts (docs/hpc.md): `--job J` groups workloads; a job checkpoint
// freezes every member before any is dumped and commits none before every one is staged, and
// the images directory's job.json names each member's snapshot of that cut. Everything read
// back from disk or the network goes through these schemas first.
import { z } from 'zod';
import { CheckpointReply, ImagesDir, RestoreReply } from './job-image.ts';
import { HostName, WorkloadName } from './names.ts';
import { IsoTime } from './time.ts';

export const JobName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a job name: lowercase letters, digits and dashes');
export type JobName = z.infer<typeof JobName>;

/** In a job's images directory: the last complete cut. Each member's images are in DIR/<member>/. */
export const JOB_JSON = 'job.json';
/** A member's images directory inside its job's. */
export const memberImages = (images: string, member: string): string => `${images.replace(/\/+$/, '')}/${member}`;

export const JobImagesManifest = z.strictObject({
  job: JobName,
  takenAt: IsoTime,
  leftRunning: z.boolean(),
  members: z
    .array(z.strictObject({ workload: WorkloadName, seq: z.number().int().positive(), host: HostName, address: z.string().nullable() }))
    .min(1)
    .max(256),
});
export type JobImagesManifest = z.infer<typeof JobImagesManifest>;

/** Coordinator -> a member's agent: one step of its part in a job checkpoint, under the job's token. */
const StepBase = { name: WorkloadName, token: z.string().regex(/^[a-z0-9-]{8,64}$/) };
export const JobMemberStep = z.discriminatedUnion('step', [
  z.strictObject({ step: z.literal('freeze'), ...StepBase, images: ImagesDir, leaveRunning: z.boolean() }),
  z.strictObject({ step: z.literal('dump'), ...StepBase }),
  z.strictObject({ step: z.literal('commit'), ...StepBase }),
  z.strictObject({ step: z.literal('abort'), ...StepBase }),
]);
export type JobMemberStep = z.infer<typeof JobMemberStep>;

export const JobMemberReply = z.strictObject({
  name: WorkloadName,
  step: z.enum(['freeze', 'dump', 'commit', 'abort']),
  /** Whether the member is frozen after this step. */
  frozen: z.boolean(),
  /** dump: the snapshot it staged. */
  seq: z.number().int().positive().nullable(),
  /** commit: the member's checkpoint. */
  reply: CheckpointReply.nullable(),
});
export type JobMemberReply = z.infer<typeof JobMemberReply>;

/** Coordinator -> agent: write a job's manifest into its images directory (the commit point), or read it. */
export const JobManifestWrite = z.strictObject({ images: ImagesDir, manifest: JobImagesManifest });
export const JobManifestRead = z.strictObject({ images: ImagesDir });

export const JobCheckpointRequest = z.strictObject({ job: JobName, images: ImagesDir, leaveRunning: z.boolean().default(false) });
export type JobCheckpointRequest = z.infer<typeof JobCheckpointRequest>;

export const JobCheckpointReply = z.strictObject({
  job: JobName,
  images: z.string(),
  members: z.array(CheckpointReply),
  /** From the first member frozen to the last one thawed or ended: how long the cut held the job. */
  barrierMs: z.number().nonnegative(),
  totalMs: z.number().nonnegative(),
});
export type JobCheckpointReply = z.infer<typeof JobCheckpointReply>;

export const JobRestoreRequest = z.strictObject({
  job: JobName,
  images: ImagesDir,
  /** Where the members go, in the order of their names; absent: each where placement puts it. */
  hosts: z.array(HostName).min(1).optional(),
});
export type JobRestoreRequest = z.infer<typeof JobRestoreRequest>;

export const JobRestoreReply = z.strictObject({ job: JobName, images: z.string(), takenAt: IsoTime, members: z.array(RestoreReply), totalMs: z.number().nonnegative() });
export type JobRestoreReply = z.infer<typeof JobRestoreReply>;
