// Limits and usage in a cgroup v2 group (docs/resources.md names each file).
import type { IoLimit, ResourceLimits, ResourceUsage } from '../../shared/resources.ts';
import type { Controller } from './layout.ts';
import { ioTargets, readKeyed, readNumber, readText, writeLimit } from './io.ts';

export const CPU_PERIOD_US = 100_000;
const IO_KEYS = ['rbps', 'wbps', 'riops', 'wiops'] as const;

export function writeV2(c: Controller, dir: string, l: ResourceLimits): void {
  switch (c) {
    case 'memory':
      // memory.high first: lowering memory.max below usage makes the kernel reclaim at once.
      writeLimit(dir, 'memory.high', l.memoryHigh ?? 'max', 'memory high (soft limit)');
      writeLimit(dir, 'memory.max', l.memoryMax ?? 'max', 'memory max');
      if (l.swapMax !== undefined) writeLimit(dir, 'memory.swap.max', l.swapMax, 'swap max');
      else if (readText(dir, 'memory.swap.max') !== null) writeLimit(dir, 'memory.swap.max', 'max', 'swap max');
      return;
    case 'cpu':
      writeLimit(dir, 'cpu.max', `${l.cpus === undefined ? 'max' : Math.round(l.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`, 'cpus');
      writeLimit(dir, 'cpu.weight', l.cpuWeight ?? 100, 'cpu weight');
      return;
    case 'pids':
      writeLimit(dir, 'pids.max', l.pidsMax ?? 'max', 'pids max');
      return;
    case 'io': {
      for (const d of ioTargets(l.io, readIoMax(dir))) writeLimit(dir, 'io.max', `${d.device} ${IO_KEYS.map((k) => `${k}=${d[k] ?? 'max'}`).join(' ')}`, `io max of ${d.device}`);
      return;
    }
  }
}

function readIoMax(dir: string): IoLimit[] {
  const out: IoLimit[] = [];
  for (const line of (readText(dir, 'io.max') ?? '').split('\n')) {
    const [device, ...kvs] = line.trim().split(/\s+/);
    if (!device || !/^\d+:\d+$/.test(device)) continue;
    const d: IoLimit = { device };
    for (const kv of kvs) {
      const [k, v] = kv.split('=') as [(typeof IO_KEYS)[number], string];
      if (IO_KEYS.includes(k) && v !== 'max') d[k] = Number(v);
    }
    out.push(d);
  }
  return out;
}

export function readV2(c: Controller, dir: string): ResourceLimits {
  switch (c) {
    case 'memory':
      return { memoryMax: readNumber(dir, 'memory.max'), memoryHigh: readNumber(dir, 'memory.high'), swapMax: readNumber(dir, 'memory.swap.max') };
    case 'cpu': {
      const [quota, period] = (readText(dir, 'cpu.max') ?? 'max').split(/\s+/);
      const weight = readNumber(dir, 'cpu.weight');
      return { cpus: quota === 'max' || !period ? undefined : Number(quota) / Number(period), cpuWeight: weight === 100 ? undefined : weight };
    }
    case 'pids':
      return { pidsMax: readNumber(dir, 'pids.max') };
    case 'io': {
      const io = readIoMax(dir).filter((d) => Object.keys(d).length > 1);
      return { io: io.length ? io : undefined };
    }
  }
}

export function usageV2(c: Controller, dir: string): ResourceUsage {
  switch (c) {
    case 'memory':
      return { memoryBytes: readNumber(dir, 'memory.current'), memoryLimitHits: readKeyed(dir, 'memory.events').get('max') };
    case 'cpu': {
      const s = readKeyed(dir, 'cpu.stat');
      return { cpuUsec: s.get('usage_usec'), cpuThrottled: s.get('nr_throttled'), cpuPeriods: s.get('nr_periods') };
    }
    case 'pids':
      return { pids: readNumber(dir, 'pids.current') };
    case 'io': {
      let r = 0;
      let w = 0;
      for (const line of (readText(dir, 'io.stat') ?? '').split('\n')) {
        r += Number(/rbytes=(\d+)/.exec(line)?.[1] ?? 0);
        w += Number(/wbytes=(\d+)/.exec(line)?.[1] ?? 0);
      }
      return { ioReadBytes: r, ioWriteBytes: w };
    }
  }
}
