// Which cgroup hierarchy holds each controller on this host. A host may run cgroup v2 only, v1
// only, or both (hybrid: v1 hierarchies under /sys/fs/cgroup/<controller> beside a unified v2
// mount that holds what v1 does not). ferry uses v2 for a controller wherever the v2 hierarchy
// has it, v1 otherwise; the v2 group exists wherever v2 is mounted (the freezer lives there).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { cgroup2Root } from './root.ts';

/** A controller as ferry uses it, named by its v2 name (v1: blkio for io; cpuacct for cpu usage). */
export type Controller = 'memory' | 'cpu' | 'pids' | 'io';
export const CONTROLLERS: readonly Controller[] = ['memory', 'cpu', 'pids', 'io'];

/** The v1 hierarchies ferry makes a group in: the limit controllers and cpuacct for CPU usage. */
export type V1Name = 'memory' | 'cpu' | 'cpuacct' | 'pids' | 'blkio';
export const V1_NAMES: readonly V1Name[] = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio'];
const v1NameOf: Record<Controller, V1Name> = { memory: 'memory', cpu: 'cpu', pids: 'pids', io: 'blkio' };
export const v1Name = (c: Controller): V1Name => v1NameOf[c];

export interface CgroupLayout {
  /** The cgroup2 mount where ferry makes groups (null: none usable). */
  v2Root: string | null;
  /** Controllers the v2 root offers (its cgroup.controllers). */
  v2Controllers: ReadonlySet<string>;
  /** Where each v1 hierarchy is mounted. */
  v1Mounts: ReadonlyMap<V1Name, string>;
}

export type Placement = { kind: 'v2'; root: string } | { kind: 'v1'; mount: string } | null;

/** Where a controller lives on this host: v2 where the unified hierarchy has it, else its v1 mount, else nowhere. */
export function placementOf(l: CgroupLayout, c: Controller): Placement {
  if (l.v2Root && l.v2Controllers.has(c)) return { kind: 'v2', root: l.v2Root };
  const mount = l.v1Mounts.get(v1Name(c));
  return mount ? { kind: 'v1', mount } : null;
}

/** The v1 mounts named in a /proc/self/mounts text. */
export function v1MountsOf(mounts: string): Map<V1Name, string> {
  const out = new Map<V1Name, string>();
  for (const l of mounts.split('\n')) {
    const [, dir, fstype, opts] = l.split(' ');
    if (fstype !== 'cgroup' || !dir) continue;
    const o = (opts ?? '').split(',');
    for (const n of V1_NAMES) if (o.includes(n) && !out.has(n)) out.set(n, dir);
  }
  return out;
}

let cached: CgroupLayout | null = null;

/** This host's layout (probed once: it does not change while the agent runs). */
export function hostLayout(): CgroupLayout {
  if (cached) return cached;
  const v2Root = cgroup2Root();
  const ctl = v2Root && existsSync(path.join(v2Root, 'cgroup.controllers')) ? readFileSync(path.join(v2Root, 'cgroup.controllers'), 'utf8').trim().split(/\s+/) : [];
  cached = { v2Root, v2Controllers: new Set(ctl.filter(Boolean)), v1Mounts: v1MountsOf(readFileSync('/proc/self/mounts', 'utf8')) };
  return cached;
}

/** Which layout serves each controller, for the host facts: "v2", "v1" or null. */
export function controllerLayouts(l: CgroupLayout): Record<Controller, 'v1' | 'v2' | null> {
  return Object.fromEntries(CONTROLLERS.map((c) => [c, placementOf(l, c)?.kind ?? null])) as Record<Controller, 'v1' | 'v2' | null>;
}
