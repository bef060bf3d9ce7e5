// A workload's resource limits (enforced by its cgroup) and requests (what placement reserves
// for it), as they travel in records and on the wire (their CLI spellings: resource-units.ts).
// Memory values are whole pages: the kernel keeps page counts, so a value that is not one would
// read back differently from what was recorded.
import { z } from 'zod';

import { PAGE_BYTES } from './resource-units.ts';

export { PAGE_BYTES, parseBytes, parseCpus, parseIoMax, parseRequests } from './resource-units.ts';

const Bytes = z.number().int().positive().multipleOf(PAGE_BYTES, 'a whole number of 4096-byte pages');
/** A block device as the kernel names it in cgroup files. */
export const DeviceNumber = z.string().regex(/^\d+:\d+$/, 'a device number MAJOR:MINOR');

export const IoLimit = z.strictObject({
  device: DeviceNumber,
  rbps: z.number().int().positive().optional(),
  wbps: z.number().int().positive().optional(),
  riops: z.number().int().positive().optional(),
  wiops: z.number().int().positive().optional(),
});
export type IoLimit = z.infer<typeof IoLimit>;

export const ResourceLimits = z.strictObject({
  /** Hard memory limit (v2 memory.max, v1 memory.limit_in_bytes). */
  memoryMax: Bytes.optional(),
  /** Soft memory limit (v2 memory.high, v1 memory.soft_limit_in_bytes). */
  memoryHigh: Bytes.optional(),
  /** Swap the workload may use besides memoryMax (v2 memory.swap.max, v1 memory.memsw.limit_in_bytes = memoryMax + swap). */
  swapMax: z.number().int().nonnegative().multipleOf(PAGE_BYTES).optional(),
  /** CPU time per wall-clock time, in CPUs (v2 cpu.max, v1 cpu.cfs_quota_us/cpu.cfs_period_us). */
  cpus: z.number().positive().max(1024).optional(),
  /** Relative CPU weight, 1..10000, 100 being the default (v2 cpu.weight, v1 cpu.shares = weight * 1024 / 100). */
  cpuWeight: z.number().int().min(1).max(10_000).optional(),
  /** Most tasks (processes and threads) at once (pids.max). */
  pidsMax: z.number().int().positive().optional(),
  /** Per-device I/O ceilings (v2 io.max, v1 blkio.throttle.*_device). */
  io: z.array(IoLimit).optional(),
});
export type ResourceLimits = z.infer<typeof ResourceLimits>;

/** What the workload is guaranteed to need: a host takes it only while these fit beside its other workloads' requests. */
export const ResourceRequests = z.strictObject({
  memoryBytes: z.number().int().nonnegative().optional(),
  cpus: z.number().nonnegative().optional(),
});
export type ResourceRequests = z.infer<typeof ResourceRequests>;

/** Usage from the workload's cgroup statistics (absent where the host lacks the controller). */
export const ResourceUsage = z.strictObject({
  memoryBytes: z.number().nonnegative().optional(),
  /** CPU time used since the cgroup was made here, in microseconds. */
  cpuUsec: z.number().nonnegative().optional(),
  /** CPU periods in which the quota was exhausted, and how many (cpu.stat nr_throttled / nr_periods). */
  cpuThrottled: z.number().int().nonnegative().optional(),
  cpuPeriods: z.number().int().nonnegative().optional(),
  pids: z.number().int().nonnegative().optional(),
  ioReadBytes: z.number().nonnegative().optional(),
  ioWriteBytes: z.number().nonnegative().optional(),
  /** Times the memory limit was hit (v2 memory.events max, v1 memory.failcnt). */
  memoryLimitHits: z.number().int().nonnegative().optional(),
});
export type ResourceUsage = z.infer<typeof ResourceUsage>;

/** The resources part of a workload record: what `run` set and `update` changed. */
export const WorkloadResources = z.strictObject({
  limits: ResourceLimits.default({}),
  requests: ResourceRequests.default({}),
});
export type WorkloadResources = z.infer<typeof WorkloadResources>;

/** Limits as the kernel will hold them: CPUs to the microsecond of a 100 ms period. */
export function normalizeLimits(l: ResourceLimits): ResourceLimits {
  const out: ResourceLimits = { ...l };
  if (out.cpus !== undefined) out.cpus = Math.max(1000, Math.round(out.cpus * 100_000)) / 100_000;
  return JSON.parse(JSON.stringify(out)) as ResourceLimits;
}
