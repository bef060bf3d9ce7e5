// Every message that crosses a process boundary, as a zod schema and its type. Requests and
// replies are listed per endpoint in `agentApi` and `coordinatorApi`, so a caller and a server
// cannot disagree about a shape; shared/rpc.ts enforces them on both ends.
import { JobCheckpointReply, JobCheckpointRequest, JobImagesManifest, JobManifestRead, JobManifestWrite, JobMemberReply, JobMemberStep, JobRestoreReply, JobRestoreRequest } from './job-group.ts';
import { z } from 'zod';
import { IsoTime } from './time.ts';
import { ErrorCode } from './errors.ts';
import { HostFacts } from './facts.ts';
import { HostName } from './names.ts';
import { CordonReply, CordonRequest, DrainRequest, FleetJob, FleetJobRef, HostRef, RebalanceRequest } from './fleet.ts';
import { AgentRestoreRequest, CheckpointReply, RestoreReply as WorkloadRestoreReply, WorkloadCheckpointRequest, WorkloadOperation, WorkloadRestoreRequest } from './job-image.ts';
import { RunOnHost, RunRequest, UpdateRequest, WorkloadClaim, WorkloadInfo, WorkloadListing, WorkloadRef } from './workload.ts';
import {
  AdmitRequest,
  DoneReply,
  FreezeReply,
  FreezeRequest,
  PostcopyReply,
  MigrateRequest,
  MigrationRef,
  MigrationView,
  PrecopyRequest,
  PreflightReply,
  ReceiveReply,
  RestoreReply,
  RoundStatsWire,
  SendReply,
  SendRequest,
  StatusRequest,
  StepBase,
} from './migration.ts';

export const PROTOCOL_VERSION = 1;

export const ErrorWire = z.strictObject({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  retryable: z.boolean(),
  details: z.record(z.string(), z.unknown()).optional(),
});

/** Every reply is an envelope: a result, or an error that the caller rethrows as FerryError. */
export const replyEnvelope = <T extends z.ZodType>(result: T) =>
  z.discriminatedUnion('ok', [z.strictObject({ ok: z.literal(true), result }), z.strictObject({ ok: z.literal(false), error: ErrorWire })]);

// --- heartbeats and registration -------------------------------------------------------------

export const Heartbeat = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  host: HostName,
  /** Increases by one per heartbeat of one agent process; restarts at 1 with a new agent. */
  seq: z.number().int().positive(),
  /** Milliseconds between heartbeats: receivers judge liveness against it. */
  intervalMs: z.number().int().positive(),
  sentAt: IsoTime,
  facts: HostFacts,
  /** The names and addresses this host holds: a coordinator keeps them reserved while the host is lost. */
  workloads: z.array(WorkloadClaim).optional(),
});
export type Heartbeat = z.infer<typeof Heartbeat>;

/** What an agent writes into the hosts bucket when it starts: the cluster's durable membership. */
export const HostRecord = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  registeredAt: IsoTime,
  facts: HostFacts,
});
export type HostRecord = z.infer<typeof HostRecord>;

/** A host as the coordinator sees it: its last facts and whether it is alive. */
export const HostView = z.strictObject({
  name: HostName,
  alive: z.boolean(),
  /** Takes no new workload and no incoming migration (`ferry cordon`). */
  cordoned: z.boolean(),
  /** Kernel release, repeated at the top level for scripts. */
  kernel: z.string(),
  lastSeen: IsoTime.nullable(),
  registeredAt: IsoTime,
  facts: HostFacts,
});
export type HostView = z.infer<typeof HostView>;

/** `ferry dashboard` -> the leading coordinator: a one-time login link to its web dashboard. */
export const DashboardLogin = z.strictObject({
  /** Open this in a browser: it sets a session cookie and goes to the dashboard. A secret until used (single use, short lived). */
  url: z.string().url(),
  /** The dashboard itself, without the token. */
  dashboardUrl: z.string().url(),
  /** The link is refused after this, and after its first use. */
  expiresAt: IsoTime,
  /** The coordinator that issued it: its sessions are valid there only. */
  coordinator: z.string(),
});
export type DashboardLogin = z.infer<typeof DashboardLogin>;

// --- endpoints -------------------------------------------------------------------------------

export interface EndpointSpec<Req extends z.ZodType, Res extends z.ZodType> {
  request: Req;
  reply: Res;
  /** How long a caller waits for the reply by default. */
  timeoutMs: number;
}
const endpoint = <Req extends z.ZodType, Res extends z.ZodType>(request: Req, reply: Res, timeoutMs = 5_000): EndpointSpec<Req, Res> => ({
  request,
  reply,
  timeoutMs,
});

const Empty = z.strictObject({});

export const agentApi = {
  facts: endpoint(Empty, HostFacts),
  run: endpoint(RunRequest, WorkloadInfo, 15_000),
  workloads: endpoint(Empty, z.array(WorkloadInfo)),
  stop: endpoint(WorkloadRef, WorkloadInfo, 10_000),
  update: endpoint(UpdateRequest, WorkloadInfo, 10_000),
  ping: endpoint(Empty, z.strictObject({ host: HostName, pid: z.number().int(), uptimeMs: z.number() })),
  // One step of a migration each; the coordinator's phase actors call them (see coordinator/actors.ts).
  'mig.preflight': endpoint(StepBase, PreflightReply, 15_000),
  'mig.admit': endpoint(AdmitRequest, DoneReply, 15_000),
  'mig.freeze': endpoint(FreezeRequest, FreezeReply, 30_000),
  'mig.receive': endpoint(StepBase, ReceiveReply, 10_000),
  'mig.precopy': endpoint(PrecopyRequest, RoundStatsWire, 120_000),
  'mig.send': endpoint(SendRequest, SendReply, 600_000),
  'mig.restore': endpoint(StepBase, RestoreReply, 600_000),
  'mig.resume': endpoint(StepBase, RestoreReply, 30_000),
  // After a post-copy switchover it waits for its push to end.
  'mig.cleanup': endpoint(StepBase, DoneReply, 600_000),
  // After a post-copy switchover, the destination's word: every page arrived, or the workload was lost.
  'mig.postcopy': endpoint(StepBase, PostcopyReply, 600_000),
  'mig.discard': endpoint(StepBase, DoneReply, 30_000),
  'mig.thaw': endpoint(StepBase, DoneReply, 30_000),
  // Workload checkpoints on shared storage (agent/jobs/, docs/hpc.md).
  'job.checkpoint': endpoint(WorkloadCheckpointRequest, CheckpointReply, 600_000),
  'job.restore': endpoint(AgentRestoreRequest, WorkloadRestoreReply, 600_000),
  // A job's cut (coordinator/job-checkpoints.ts): one member's step, and the job's manifest.
  'job.member': endpoint(JobMemberStep, JobMemberReply, 600_000),
  'job.manifest-write': endpoint(JobManifestWrite, z.strictObject({ path: z.string() }), 15_000),
  'job.manifest-read': endpoint(JobManifestRead, JobImagesManifest, 15_000),
} as const;

export const coordinatorApi = {
  hosts: endpoint(Empty, z.array(HostView)),
  run: endpoint(RunOnHost, WorkloadInfo, 20_000),
  ps: endpoint(Empty, WorkloadListing, 10_000),
  stop: endpoint(WorkloadRef, WorkloadInfo, 15_000),
  update: endpoint(UpdateRequest, WorkloadInfo, 15_000),
  migrate: endpoint(MigrateRequest, MigrationView, 10_000),
  status: endpoint(StatusRequest, z.array(MigrationView)),
  cancel: endpoint(MigrationRef, MigrationView),
  cordon: endpoint(CordonRequest, CordonReply),
  uncordon: endpoint(HostRef, CordonReply),
  drain: endpoint(DrainRequest, FleetJob, 30_000),
  rebalance: endpoint(RebalanceRequest, FleetJob, 30_000),
  /** Drains and rebalances: one by id, or every recorded one (newest first). */
  fleet: endpoint(FleetJobRef, z.array(FleetJob)),
  /** A one-time login link to the leader's web dashboard (coordinator/dashboard/). */
  dashboard: endpoint(Empty, DashboardLogin),
  /** A running workload checkpointed into an images directory on shared storage (ended unless leaveRunning). */
  checkpoint: endpoint(WorkloadCheckpointRequest, CheckpointReply, 610_000),
  /** A checkpointed workload restored from its images directory, on the host asked for or where it was. */
  restore: endpoint(WorkloadRestoreRequest, WorkloadRestoreReply, 610_000),
  /** Every running member of a job checkpointed at one cut (frozen together before any is dumped). */
  'checkpoint-job': endpoint(JobCheckpointRequest, JobCheckpointReply, 620_000),
  /** Every member of a job's last cut restored, on the hosts asked for or by placement. */
  'restore-job': endpoint(JobRestoreRequest, JobRestoreReply, 620_000),
  /** Checkpoints and restores: those in flight, or (all) every recorded one, newest first. */
  operations: endpoint(z.strictObject({ all: z.boolean().default(false) }), z.array(WorkloadOperation)),
} as const;

export type AgentApi = typeof agentApi;
export type CoordinatorApi = typeof coordinatorApi;
