// Limits and usage in cgroup v1 hierarchies (docs/resources.md names each file). v1 counts swap
// together with memory (memsw = memory + swap) and CPU weight as shares (1024 = v2's 100).
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { IoLimit, ResourceLimits, ResourceUsage } from '../../shared/resources.ts';
import type { Controller } from './layout.ts';
import { V1_UNLIMITED, ioTargets, readKeyed, readNumber, readText, writeLimit } from './io.ts';
import { CPU_PERIOD_US } from './v2.ts';

const limited = (n: number | undefined): number | undefined => (n === undefined || n < 0 || n >= V1_UNLIMITED ? undefined : n);
export const sharesOf = (weight: number): number => Math.round((weight * 1024) / 100);
export const weightOf = (shares: number): number => Math.round((shares * 100) / 1024);
const IO_FILES = { rbps: 'blkio.throttle.read_bps_device', wbps: 'blkio.throttle.write_bps_device', riops: 'blkio.throttle.read_iops_device', wiops: 'blkio.throttle.write_iops_device' } as const;
const IO_KEYS = Object.keys(IO_FILES) as (keyof typeof IO_FILES)[];

export function writeV1(c: Controller, dir: string, l: ResourceLimits): void {
  switch (c) {
    case 'memory': {
      if (l.swapMax !== undefined && l.memoryMax === undefined)
        throw new FerryError(ErrorCode.InvalidRequest, 'a swap limit needs a memory limit on this host (cgroup v1 limits memory and swap together)');
      const memsw = readText(dir, 'memory.memsw.limit_in_bytes') !== null;
      // memsw may never be below the memory limit: lifted first, set last.
      if (memsw) writeLimit(dir, 'memory.memsw.limit_in_bytes', -1, 'swap max');
      writeLimit(dir, 'memory.limit_in_bytes', l.memoryMax ?? -1, 'memory max');
      writeLimit(dir, 'memory.soft_limit_in_bytes', l.memoryHigh ?? -1, 'memory high (soft limit)');
      if (l.swapMax !== undefined) writeLimit(dir, 'memory.memsw.limit_in_bytes', l.memoryMax! + l.swapMax, 'swap max');
      return;
    }
    case 'cpu':
      writeLimit(dir, 'cpu.cfs_period_us', CPU_PERIOD_US, 'cpus');
      writeLimit(dir, 'cpu.cfs_quota_us', l.cpus === undefined ? -1 : Math.round(l.cpus * CPU_PERIOD_US), 'cpus');
      writeLimit(dir, 'cpu.shares', sharesOf(l.cpuWeight ?? 100), 'cpu weight');
      return;
    case 'pids':
      writeLimit(dir, 'pids.max', l.pidsMax ?? 'max', 'pids max');
      return;
    case 'io': {
      // 0 removes a device's rule.
      for (const d of ioTargets(l.io, readBlkio(dir))) for (const k of IO_KEYS) writeLimit(dir, IO_FILES[k], `${d.device} ${d[k] ?? 0}`, `io ${k} of ${d.device}`);
      return;
    }
  }
}

function readBlkio(dir: string): IoLimit[] {
  const byDev = new Map<string, IoLimit>();
  for (const k of IO_KEYS) {
    for (const line of (readText(dir, IO_FILES[k]) ?? '').split('\n')) {
      const [device, v] = line.trim().split(/\s+/);
      if (!device || !v) continue;
      const d = byDev.get(device) ?? { device };
      d[k] = Number(v);
      byDev.set(device, d);
    }
  }
  return [...byDev.values()];
}

export function readV1(c: Controller, dir: string): ResourceLimits {
  switch (c) {
    case 'memory': {
      const max = limited(readNumber(dir, 'memory.limit_in_bytes'));
      const memsw = limited(readNumber(dir, 'memory.memsw.limit_in_bytes'));
      return { memoryMax: max, memoryHigh: limited(readNumber(dir, 'memory.soft_limit_in_bytes')), swapMax: memsw !== undefined && max !== undefined ? memsw - max : undefined };
    }
    case 'cpu': {
      const quota = readNumber(dir, 'cpu.cfs_quota_us');
      const period = readNumber(dir, 'cpu.cfs_period_us');
      const weight = weightOf(readNumber(dir, 'cpu.shares') ?? 1024);
      return { cpus: quota === undefined || quota < 0 || !period ? undefined : quota / period, cpuWeight: weight === 100 ? undefined : weight };
    }
    case 'pids':
      return { pidsMax: readNumber(dir, 'pids.max') };
    case 'io': {
      const io = readBlkio(dir);
      return { io: io.length ? io : undefined };
    }
  }
}

/** `cpuacct`: the group in the cpuacct hierarchy (CPU time used). */
export function usageV1(c: Controller, dir: string, cpuacct: string | null): ResourceUsage {
  switch (c) {
    case 'memory':
      return { memoryBytes: readNumber(dir, 'memory.usage_in_bytes'), memoryLimitHits: readNumber(dir, 'memory.failcnt') };
    case 'cpu': {
      const s = readKeyed(dir, 'cpu.stat');
      const ns = cpuacct ? readNumber(cpuacct, 'cpuacct.usage') : undefined;
      return { cpuUsec: ns === undefined ? undefined : Math.floor(ns / 1000), cpuThrottled: s.get('nr_throttled'), cpuPeriods: s.get('nr_periods') };
    }
    case 'pids':
      return { pids: readNumber(dir, 'pids.current') };
    case 'io': {
      let r = 0;
      let w = 0;
      for (const line of (readText(dir, 'blkio.throttle.io_service_bytes_recursive') ?? '').split('\n')) {
        const [, op, v] = line.trim().split(/\s+/);
        if (op === 'Read') r += Number(v);
        if (op === 'Write') w += Number(v);
      }
      return { ioReadBytes: r, ioWriteBytes: w };
    }
  }
}
