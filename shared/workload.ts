// A workload: a process tree that ferry started as a container (its own pid, uts, ipc and time
// namespaces, and a cgroup) and can move between hosts.
import { z } from 'zod';
import { PlacementPolicy } from './fleet.ts';
import { IsoTime } from './time.ts';
import { HostName, WorkloadName } from './names.ts';
import { Ipv4 } from './subnet.ts';
import { ResourceLimits, ResourceRequests, ResourceUsage } from './resources.ts';

/** `checkpointed`: it runs nowhere, and its images directory holds it (`ferry restore`). */
export const WorkloadState = z.enum(['running', 'frozen', 'migrating', 'exited', 'checkpointed']);
export type WorkloadState = z.infer<typeof WorkloadState>;

export const WorkloadInfo = z.strictObject({
  name: WorkloadName,
  host: HostName,
  state: WorkloadState,
  /** The container's first process (PID 1 in its pid namespace), as seen from the host. */
  rootPid: z.number().int().nullable(),
  /** Every process of the tree, as pids of the machine's root pid namespace. */
  pids: z.array(z.number().int()),
  /** Resident memory of the whole tree. */
  memoryBytes: z.number().nonnegative(),
  command: z.array(z.string()).min(1),
  startedAt: IsoTime,
  /** The workload's own IPv4 address in its own network namespace; null when it shares its host's (an agent without a workload network). */
  address: z.string().nullable(),
  cgroup: z.string().nullable(),
  log: z.string(),
  /** Limits its cgroup enforces (docs/resources.md), carried through every migration. */
  limits: ResourceLimits.default({}),
  /** What placement reserves for it on its host. */
  requests: ResourceRequests.default({}),
  /** Usage from its cgroup's statistics on the host that runs it. */
  usage: ResourceUsage.default({}),
  /** The images directory of its last checkpoint (docs/hpc.md), when it has one. */
  images: z.string().optional(),
  /** The job it belongs to (`--job`), when it has one. */
  job: z.string().optional(),
});
export type WorkloadInfo = z.infer<typeof WorkloadInfo>;

/** What a host holds in the cluster's name and address space: a workload's name and address, until it is stopped or reaped. */
export const WorkloadClaim = z.strictObject({ name: WorkloadName, address: Ipv4.nullable() });
export type WorkloadClaim = z.infer<typeof WorkloadClaim>;

/**
 * Every workload the live hosts reported, the live hosts that did not answer (their workloads are
 * missing from the list), and the lost hosts with what they last claimed (null: not known to
 * this coordinator), which may still run there.
 */
export const WorkloadListing = z.strictObject({
  workloads: z.array(WorkloadInfo),
  unanswered: z.array(z.strictObject({ host: HostName, error: z.string() })),
  lost: z.array(z.strictObject({ host: HostName, workloads: z.array(WorkloadClaim).nullable() })).default([]),
});
export type WorkloadListing = z.infer<typeof WorkloadListing>;

export const RunRequest = z.strictObject({
  name: WorkloadName,
  // Arguments may be empty (`--save ''`); the program name may not.
  command: z.array(z.string()).min(1).refine((c) => (c[0] ?? '') !== '', 'the command needs a program name'),
  env: z.record(z.string(), z.string()).default({}),
  cwd: z.string().optional(),
  /** The workload's IPv4 address, unique in the cluster; the coordinator allocates one when it is absent. */
  address: Ipv4.optional(),
  limits: ResourceLimits.default({}),
  requests: ResourceRequests.default({}),
});
export type RunRequest = z.infer<typeof RunRequest>;

export const WorkloadRef = z.strictObject({ name: WorkloadName });
/** `ferry run` to the coordinator: without a host, placement chooses one (coordinator/fleet/placement.ts). */
export const RunOnHost = RunRequest.extend({ host: HostName.optional(), policy: PlacementPolicy.prefault({}) });
export type RunOnHost = z.infer<typeof RunOnHost>;

/** `ferry update`: the limits given replace the workload's; those not given stay. */
export const UpdateRequest = z.strictObject({ name: WorkloadName, limits: ResourceLimits });
export type UpdateRequest = z.infer<typeof UpdateRequest>;
