// The host's memory as heartbeats report it. A module of its own, without the rest of
// agent/facts.ts (kernel probes, cgroup layout): the heartbeat thread reads it every beat and
// should not load the probes to do so.
import { readFileSync } from 'node:fs';
import type { HostFacts } from '../shared/facts.ts';

/** MemAvailable is the kernel's own estimate of what can be allocated without swapping. */
export function hostMemory(): HostFacts['memory'] {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(info)?.[1] ?? 0) * 1024;
  return { totalBytes: kib('MemTotal'), availableBytes: kib('MemAvailable') };
}
