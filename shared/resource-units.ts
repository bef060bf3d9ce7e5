// The resource options' units as people write them ("512M", "0.5", "8:0:rbps=1M",
// "memory=1G,cpu=0.5"), parsed without zod: the CLI's option parsers load this when it starts, and
// `ferry --help` must not pay for every schema.
import type { IoLimit, ResourceRequests } from './resources.ts';

export const PAGE_BYTES = 4096;

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
