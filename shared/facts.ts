// The facts an agent reports about its host: what a coordinator needs to decide whether a
// workload checkpointed on one host can be restored on another.
import { z } from 'zod';
import { IsoTime } from './time.ts';
import { HostName, WorkloadName } from './names.ts';
import { ResourceLimits, ResourceRequests, ResourceUsage } from './resources.ts';

export const KernelFeatures = z.strictObject({
  /** userfaultfd write-protect in async mode: ferry's default dirty-page tracker. */
  uffdWpAsync: z.boolean(),
  /** The PAGEMAP_SCAN ioctl on /proc/PID/pagemap. */
  pagemapScan: z.boolean(),
  /** CONFIG_MEM_SOFT_DIRTY (CRIU's tracker; absent on many kernels). */
  softDirty: z.boolean(),
  /** clone3 with set_tid: PIDs and TIDs can be chosen on restore. */
  clone3SetTid: z.boolean(),
  /** vDSO/vvar sealed (CONFIG_MSEAL_SYSTEM_MAPPINGS): they cannot be moved, so restore is impossible. */
  sealedSystemMappings: z.boolean(),
  /** Time namespaces: clocks carried across hosts with different uptimes. */
  timeNamespaces: z.boolean(),
  /** cgroup v2 freezer: a freeze that outlives the agent. */
  cgroup2Freezer: z.boolean(),
  /** ptrace is permitted (not blocked by Yama or a seccomp policy). */
  ptrace: z.boolean(),
});
export type KernelFeatures = z.infer<typeof KernelFeatures>;

export const Xsave = z.strictObject({
  /** XCR0 as the kernel exposes it to user space (hex string, e.g. "0xe7"). */
  xcr0: z.string().regex(/^0x[0-9a-f]+$/),
  /** Bytes of the NT_X86_XSTATE regset: threads' FPU/AVX state must fit exactly. */
  xstateSize: z.number().int().positive(),
});
export type Xsave = z.infer<typeof Xsave>;

const Layout = z.enum(['v1', 'v2']).nullable();

/** Where each resource controller lives on the host (null: the host lacks it). */
export const CgroupControllers = z.strictObject({ memory: Layout, cpu: Layout, pids: Layout, io: Layout });

/** One workload's load as its cgroup counts it, with what it asked for: what rebalancing weighs. */
export const WorkloadLoad = z.strictObject({ name: WorkloadName, usage: ResourceUsage, limits: ResourceLimits, requests: ResourceRequests });
export type WorkloadLoad = z.infer<typeof WorkloadLoad>;

export const HostFacts = z.strictObject({
  name: HostName,
  hostname: z.string(),
  /** The host's address on the cluster network (where its data-plane listener is reached). */
  address: z.string(),
  kernel: z.strictObject({ release: z.string(), version: z.string(), arch: z.string() }),
  cpu: z.strictObject({ model: z.string(), count: z.number().int().positive(), xsave: Xsave.nullable() }),
  memory: z.strictObject({ totalBytes: z.number().nonnegative(), availableBytes: z.number().nonnegative() }),
  features: KernelFeatures,
  agent: z.strictObject({ version: z.string(), pid: z.number().int(), startedAt: IsoTime }),
  /** The agent's data stream listener (port, encrypted or not); null: it has no identity and takes no part in migrations. */
  dataStream: z.strictObject({ port: z.number().int().min(1).max(65535), encrypt: z.boolean() }).nullable(),
  cgroups: CgroupControllers.optional(),
  /** Per workload usage from cgroup statistics, fresh in every heartbeat. */
  workloads: z.array(WorkloadLoad).optional(),
});
export type HostFacts = z.infer<typeof HostFacts>;
