// A workload's resource limits (enforced by its cgroup) and requests (what placement reserves
// for it), as they travel in records and on the wire, and the parsers of their CLI spellings.
// Memory values are whole pages: the kernel keeps page counts, so a value that is not one would
// read back differently from what was recorded.
import { z } from 'zod';

export const PAGE_BYTES = 4096;

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

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, ki: 1024, m: 1024 ** 2, mi: 1024 ** 2, g: 1024 ** 3, gi: 1024 ** 3, t: 1024 ** 4, ti: 1024 ** 4 };

/** "512M", "1.5G", "4096": bytes, rounded down to whole pages (binary units; a trailing B is allowed). */
export function parseBytes(v: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?$/i.exec(v.trim());
  if (!m) throw new Error(`${what}: "${v}" is not a size (e.g. 512M, 2G, 1048576)`);
  const n = Math.floor((Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]!) / PAGE_BYTES) * PAGE_BYTES;
  if (n <= 0) throw new Error(`${what}: "${v}" is less than one page (4096 bytes)`);
  return n;
}

/** "0.5", "2": CPUs. */
export function parseCpus(v: string, what = 'cpus'): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v.trim()) || !(n > 0)) throw new Error(`${what}: "${v}" is not a positive number of CPUs`);
  return n;
}

/** "8:0:rbps=1M,wbps=512K" or "8:0 rbps=..": one device's I/O ceilings (bytes per second take sizes; iops are plain). */
export function parseIoMax(v: string): IoLimit {
  const m = /^(\d+:\d+)[: ]((?:[rw](?:bps|iops)=[^,]+,?)+)$/.exec(v.trim());
  if (!m) throw new Error(`--io-max: "${v}" is not DEVICE:rbps=..,wbps=..,riops=..,wiops=.. (DEVICE as MAJOR:MINOR)`);
  const out: IoLimit = { device: m[1]! };
  for (const kv of m[2]!.split(',').filter(Boolean)) {
    const [k, val] = kv.split('=') as ['rbps' | 'wbps' | 'riops' | 'wiops', string];
    out[k] = k.endsWith('bps') ? parseBytes(val, `--io-max ${k}`) : Math.floor(parseCpus(val, `--io-max ${k}`));
  }
  return out;
}

/** "memory=1G,cpu=0.5": requests. */
export function parseRequests(v: string): ResourceRequests {
  const out: ResourceRequests = {};
  for (const kv of v.split(',').filter(Boolean)) {
    const [k, val = ''] = kv.split('=');
    if (k === 'memory') out.memoryBytes = parseBytes(val, '--requests memory');
    else if (k === 'cpu' || k === 'cpus') out.cpus = parseCpus(val, '--requests cpu');
    else throw new Error(`--requests: unknown resource "${k}" (memory, cpu)`);
  }
  return out;
}

/** Limits as the kernel will hold them: CPUs to the microsecond of a 100 ms period. */
export function normalizeLimits(l: ResourceLimits): ResourceLimits {
  const out: ResourceLimits = { ...l };
  if (out.cpus !== undefined) out.cpus = Math.max(1000, Math.round(out.cpus * 100_000)) / 100_000;
  return JSON.parse(JSON.stringify(out)) as ResourceLimits;
}
