// A workload's cgroup on this host, whatever the layout: one group per hierarchy it needs (the v2
// group for the freezer and the controllers v2 holds, a v1 group for each controller that lives
// in v1), limits written before any process joins, read back to check them, usage from the
// controllers' statistics.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { ResourceLimits, ResourceUsage } from '../../shared/resources.ts';
import { CONTROLLERS, type CgroupLayout, type Controller, V1_NAMES, type V1Name, placementOf } from './layout.ts';
import { readText } from './io.ts';
import { readV1, usageV1, writeV1 } from './v1.ts';
import { readV2, usageV2, writeV2 } from './v2.ts';

/** The controllers a set of limits needs. */
export function controllersFor(l: ResourceLimits): Controller[] {
  const out: Controller[] = [];
  if (l.memoryMax !== undefined || l.memoryHigh !== undefined || l.swapMax !== undefined) out.push('memory');
  if (l.cpus !== undefined || l.cpuWeight !== undefined) out.push('cpu');
  if (l.pidsMax !== undefined) out.push('pids');
  if (l.io?.length) out.push('io');
  return out;
}

/** What this host cannot enforce of `l`, one readable line each; empty when it can enforce all of it. */
export function unenforceable(layout: CgroupLayout, l: ResourceLimits): string[] {
  const out = controllersFor(l)
    .filter((c) => !placementOf(layout, c))
    .map((c) => `the ${c} controller is not available on this host (neither in the cgroup v2 hierarchy nor as a v1 hierarchy)`);
  const mem = placementOf(layout, 'memory');
  if (l.swapMax !== undefined && mem?.kind === 'v1' && readText(mem.mount, 'memory.memsw.limit_in_bytes') === null) out.push('swap accounting is off on this host (no memory.memsw.limit_in_bytes)');
  return out;
}

/** Undefined fields dropped, so limits compare by value. */
export const canonical = (l: ResourceLimits): ResourceLimits => JSON.parse(JSON.stringify(l)) as ResourceLimits;

export class WorkloadCgroup {
  /** `rel`: the group's path under each hierarchy's root (e.g. ferry/h1/web). */
  constructor(
    readonly layout: CgroupLayout,
    readonly rel: string,
  ) {}

  /** The v2 group (absolute), where v2 is mounted. */
  get v2Dir(): string | null {
    return this.layout.v2Root ? path.join(this.layout.v2Root, this.rel) : null;
  }

  /** The v1 groups (absolute) this workload has, by hierarchy (those a v2 controller replaces are left out). */
  get v1Dirs(): Partial<Record<V1Name, string>> {
    const out: Partial<Record<V1Name, string>> = {};
    for (const n of V1_NAMES) {
      const mount = this.layout.v1Mounts.get(n);
      const c = n === 'blkio' ? 'io' : n === 'cpuacct' ? 'cpu' : n;
      if (mount && placementOf(this.layout, c)?.kind === 'v1') out[n] = path.join(mount, this.rel);
    }
    return out;
  }

  /** Every group directory, v2 first; several v1 names may share one mount (cpu,cpuacct). */
  get dirs(): string[] {
    return [...new Set([...(this.v2Dir ? [this.v2Dir] : []), ...Object.values(this.v1Dirs)])];
  }

  /** Where a controller's files are for this workload, or null when the host lacks it. */
  dirOf(c: Controller): { kind: 'v1' | 'v2'; dir: string } | null {
    const p = placementOf(this.layout, c);
    if (!p) return null;
    return p.kind === 'v2' ? { kind: 'v2', dir: path.join(p.root, this.rel) } : { kind: 'v1', dir: path.join(p.mount, this.rel) };
  }

  /** The groups, with the v2 controllers enabled down to it. Safe to repeat. */
  create(): void {
    const root = this.layout.v2Root;
    if (root) {
      const v2 = CONTROLLERS.filter((c) => this.layout.v2Controllers.has(c));
      const parts = this.rel.split('/').filter(Boolean);
      // Each ancestor passes the controllers on to its children (the workload's own group stays a leaf).
      for (let i = 0; i < parts.length; i++) {
        const dir = path.join(root, ...parts.slice(0, i));
        mkdirSync(path.join(dir, parts[i]!), { recursive: true });
        if (v2.length && existsSync(path.join(dir, 'cgroup.subtree_control'))) writeFileSync(path.join(dir, 'cgroup.subtree_control'), v2.map((c) => `+${c}`).join(' '));
      }
    }
    for (const d of this.dirs) mkdirSync(d, { recursive: true });
  }

  /** Creates the groups and writes `l` into them; refuses, before writing anything, limits the host cannot enforce. */
  apply(l: ResourceLimits): void {
    const missing = unenforceable(this.layout, l);
    if (missing.length) throw new FerryError(ErrorCode.Unsupported, `cannot enforce the workload's limits here: ${missing.join('; ')}`, { details: { problems: missing } });
    this.create();
    for (const c of CONTROLLERS) {
      const at = this.dirOf(c);
      if (at) (at.kind === 'v2' ? writeV2 : writeV1)(c, at.dir, l);
    }
  }

  /** The limits the kernel enforces now, as read from the groups. */
  read(): ResourceLimits {
    const out: ResourceLimits = {};
    for (const c of CONTROLLERS) {
      const at = this.dirOf(c);
      if (at && existsSync(at.dir)) Object.assign(out, (at.kind === 'v2' ? readV2 : readV1)(c, at.dir));
    }
    return canonical(out);
  }

  /** Throws, naming each difference, unless the groups enforce exactly `want`. */
  verify(want: ResourceLimits, where: string): void {
    const have = this.read();
    const w = canonical(want);
    const keys = [...new Set([...Object.keys(w), ...Object.keys(have)])] as (keyof ResourceLimits)[];
    const diff = keys.filter((k) => JSON.stringify(w[k]) !== JSON.stringify(have[k])).map((k) => `${k}: want ${JSON.stringify(w[k] ?? 'none')}, cgroup has ${JSON.stringify(have[k] ?? 'none')}`);
    if (diff.length) throw new FerryError(ErrorCode.Internal, `${where}: the workload's cgroup does not enforce its limits: ${diff.join('; ')}`, { details: { want: w, have } });
  }

  usage(): ResourceUsage {
    const out: ResourceUsage = {};
    const cpuacct = this.v1Dirs.cpuacct ?? null;
    for (const c of CONTROLLERS) {
      const at = this.dirOf(c);
      if (at && existsSync(at.dir)) Object.assign(out, at.kind === 'v2' ? usageV2(c, at.dir) : usageV1(c, at.dir, cpuacct));
    }
    // v2 counts CPU time in every group, with or without the cpu controller.
    if (out.cpuUsec === undefined && this.v2Dir) Object.assign(out, { cpuUsec: usageV2('cpu', this.v2Dir).cpuUsec });
    return JSON.parse(JSON.stringify(out)) as ResourceUsage;
  }

  /** The groups (absolute dirs) a process is not in, from its /proc/PID/cgroup. */
  notMemberOf(pid: number): string[] {
    let lines: string[];
    try {
      lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    } catch {
      return this.dirs;
    }
    const pathIn = (match: (controllers: string[]) => boolean) => lines.map((l) => l.split(':')).find(([, c]) => c !== undefined && match(c.split(',')))?.slice(2).join(':');
    const want = `/${this.rel}`;
    const out: string[] = [];
    if (this.v2Dir && lines.find((l) => l.startsWith('0::'))?.slice(3) !== want) out.push(this.v2Dir);
    for (const [n, dir] of Object.entries(this.v1Dirs)) if (pathIn((c) => c.includes(n)) !== want) out.push(dir);
    return out;
  }

  /** The cgroup.procs files a process writes itself into to join every group. */
  procsFiles(): string[] {
    return this.dirs.map((d) => path.join(d, 'cgroup.procs'));
  }

  /**
   * Moves a process into every group it is not in yet (its threads follow). Each move waits for an
   * RCU grace period (milliseconds), even into the group a process is already in.
   */
  join(pid: number): void {
    for (const d of this.notMemberOf(pid)) writeFileSync(path.join(d, 'cgroup.procs'), String(pid));
  }

  /** Removes the groups once they are empty. Never throws. */
  remove(): void {
    for (const d of this.dirs) {
      try {
        rmdirSync(d);
      } catch {
        // still emptying, or gone
      }
    }
  }
}
