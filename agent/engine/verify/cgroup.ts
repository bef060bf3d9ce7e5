// The restored tree's cgroup against the workload's limits: every limit the kernel enforces in
// the workload's groups here equals what the source enforced, and every process is inside them.
import type { ResourceLimits } from '../../../shared/resources.ts';
import { Check, type ProcessRef } from './check.ts';

export interface CgroupExpectation {
  /** The limits the workload had on its source at the freeze. */
  limits: ResourceLimits;
  /** The limits the kernel enforces in the workload's groups here. */
  read: () => ResourceLimits;
  /** The workload's groups (absolute dirs) a process is not in. */
  notMemberOf: (hostPid: number) => string[];
}

export function compareCgroup(e: CgroupExpectation, procs: readonly ProcessRef[]): Check {
  const c = new Check('cgroup');
  const root = procs[0] ?? { pid: 0, hostPid: 0 };
  const have = e.read();
  const keys = [...new Set([...Object.keys(e.limits), ...Object.keys(have)])] as (keyof ResourceLimits)[];
  for (const k of keys) c.eq(root, `limit ${k}`, JSON.stringify(e.limits[k] ?? 'none'), JSON.stringify(have[k] ?? 'none'), 'limits');
  c.compared('limits');
  for (const p of procs) {
    c.compared('membership');
    for (const dir of e.notMemberOf(p.hostPid)) c.differ(p, `member of ${dir}`, 'yes', 'no');
  }
  return c;
}
