// The resource options of `ferry run` and `ferry update`, and how limits and usage read in `ps`.
import type { Command } from 'commander';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import type { IoLimit, ResourceLimits, ResourceRequests } from '../shared/resources.ts';
import { parseBytes, parseCpus, parseIoMax, parseRequests } from '../shared/resource-units.ts';
import type { WorkloadInfo } from '../shared/workload.ts';
import { bytes } from './format.ts';

/** A parser whose mistakes are invalid requests (exit code 2), not failures. */
const invalid =
  <T>(fn: (v: string) => T) =>
  (v: string): T => {
    try {
      return fn(v);
    } catch (err) {
      throw new FerryError(ErrorCode.InvalidRequest, (err as Error).message);
    }
  };

const whole = (what: string) =>
  invalid((v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n <= 0) throw new Error(`${what}: expected a whole number above 0, got "${v}"`);
    return n;
  });

export interface LimitOptions {
  memory?: number;
  memoryHigh?: number;
  swap?: number;
  cpus?: number;
  cpuWeight?: number;
  pids?: number;
  ioMax?: IoLimit[];
}

/** The limit options (both `run` and `update` take them). */
export function limitOptions(cmd: Command): Command {
  return cmd
    .option('--memory <size>', 'hard memory limit (e.g. 512M, 2G): past it the kernel reclaims, then OOM-kills', invalid((v) => parseBytes(v, '--memory')))
    .option('--memory-high <size>', 'soft memory limit: above it the workload is reclaimed first', invalid((v) => parseBytes(v, '--memory-high')))
    .option('--swap <size>', 'swap the workload may use besides --memory', invalid((v) => (v === '0' ? 0 : parseBytes(v, '--swap'))))
    .option('--cpus <n>', 'CPU time limit in CPUs (e.g. 0.5)', invalid((v) => parseCpus(v, '--cpus')))
    .option('--cpu-weight <w>', 'relative CPU weight 1..10000 (default 100)', whole('--cpu-weight'))
    .option('--pids <n>', 'most processes and threads at once', whole('--pids'))
    .option('--io-max <DEVICE:rbps=..,wbps=..>', 'I/O ceiling of a block device MAJOR:MINOR (repeatable; rbps, wbps, riops, wiops)', (v: string, prev: IoLimit[] = []) => [...prev, invalid(parseIoMax)(v)]);
}

export function limitsFrom(o: LimitOptions): ResourceLimits {
  const l: ResourceLimits = {};
  if (o.memory !== undefined) l.memoryMax = o.memory;
  if (o.memoryHigh !== undefined) l.memoryHigh = o.memoryHigh;
  if (o.swap !== undefined) l.swapMax = o.swap;
  if (o.cpus !== undefined) l.cpus = o.cpus;
  if (o.cpuWeight !== undefined) l.cpuWeight = o.cpuWeight;
  if (o.pids !== undefined) l.pidsMax = o.pids;
  if (o.ioMax?.length) l.io = o.ioMax;
  return l;
}

export const parseRequestsOption = invalid(parseRequests);

/** "mem 12 MiB/64 MiB, cpu 0.5, pids 3/16": usage against each limit, as `ps` shows it. */
export function renderResources(w: WorkloadInfo): string {
  const l = w.limits;
  const u = w.usage;
  const parts: string[] = [];
  const mem = u.memoryBytes !== undefined ? bytes(u.memoryBytes) : '-';
  if (l.memoryMax !== undefined || l.memoryHigh !== undefined) parts.push(`mem ${mem}/${l.memoryMax !== undefined ? bytes(l.memoryMax) : 'max'}${l.memoryHigh !== undefined ? ` (high ${bytes(l.memoryHigh)})` : ''}`);
  if (l.swapMax !== undefined) parts.push(`swap ${bytes(l.swapMax)}`);
  if (l.cpus !== undefined) parts.push(`cpus ${l.cpus}${u.cpuThrottled ? ` (throttled ${u.cpuThrottled}/${u.cpuPeriods ?? '?'})` : ''}`);
  if (l.cpuWeight !== undefined) parts.push(`weight ${l.cpuWeight}`);
  if (l.pidsMax !== undefined) parts.push(`pids ${u.pids ?? '-'}/${l.pidsMax}`);
  for (const d of l.io ?? []) parts.push(`io ${d.device} ${(['rbps', 'wbps', 'riops', 'wiops'] as const).filter((k) => d[k] !== undefined).map((k) => `${k}=${d[k]}`).join(',')}`);
  return parts.join(', ') || '-';
}

export const renderRequests = (r: ResourceRequests): string =>
  [r.memoryBytes !== undefined ? `mem ${bytes(r.memoryBytes)}` : '', r.cpus !== undefined ? `cpu ${r.cpus}` : ''].filter(Boolean).join(', ') || '-';
