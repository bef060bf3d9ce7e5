// Verification before the commit point: the restored tree, still stopped (or frozen), compared
// with its image process by process and resource by resource (status.ts, mappings.ts, fds.ts,
// memory.ts). Each comparator returns a Check; this file runs them, times them, and turns any
// difference into one FerryError (FERRY_VERIFY_MISMATCH) naming the process, the resource and
// the field with what was expected and what was found. A new resource is one more file and one
// more line in `comparators`.
import diagnostics_channel from 'node:diagnostics_channel';
import type { Image } from '../../../shared/image-format.ts';
import type { VerifyReport } from '../../../shared/verify.ts';
import type { Check } from './check.ts';
import { type CgroupExpectation, compareCgroup } from './cgroup.ts';
import { compareFds } from './fds.ts';
import { compareMappings } from './mappings.ts';
import { type LandingFigures, compareImageRuns, mismatchError } from './memory.ts';
import { readProcess } from './read.ts';
import type { ProcessReading } from './reading.ts';
import { compareStatus } from './status.ts';

export { LandingCheck, takeCorruptByte, flipByte } from './memory.ts';

const chan = diagnostics_channel.channel('ferry:verify');

export interface VerifyOptions {
  /** Landing checks of a live migration, one entry per round; the last is the final delta (inside the downtime). */
  landing?: readonly LandingFigures[];
  /** Reads a process (tests pass fake /proc readings). */
  read?: (hostPid: number) => ProcessReading;
  /** Compare memory that travelled in the image (default true; needs the real process). */
  imageMemory?: boolean;
  /** The image directory: its pages files settle runs that differ only where the kernel writes (rseq areas). */
  dir?: string;
  /** Ranges of ferry's own still mapped in a process (by host pid): a husk's scratch page while it is not finished. */
  ferryOwn?: (hostPid: number) => Array<{ start: bigint; end: bigint }>;
  /** The workload's cgroup limits and groups here (a migration's destination). */
  cgroup?: CgroupExpectation;
}

type Comparator = (img: Image, readings: ProcessReading[], hostPids: readonly number[], opts: VerifyOptions) => Check[];

/** One entry per resource: what it compares, over the whole tree. */
const comparators: Record<string, Comparator> = {
  status: (img, rs, hostPids) =>
    img.processes.map((p, i) => {
      const parent = img.processes.findIndex((q) => q.pid === p.ppid);
      return compareStatus(p, rs[i]!, i === 0 || parent < 0 ? null : hostPids[parent]!);
    }),
  mappings: (img, rs, _pids, opts) => img.processes.map((p, i) => compareMappings(p.vmas, rs[i]!, { pid: p.pid, hostPid: rs[i]!.hostPid }, opts.ferryOwn?.(rs[i]!.hostPid) ?? [])),
  fds: (img, rs) => [compareFds(img, rs)],
  cgroup: (img, _rs, hostPids, opts) => (opts.cgroup ? [compareCgroup(opts.cgroup, img.processes.map((p, i) => ({ pid: p.pid, hostPid: hostPids[i]! })))] : []),
};

/**
 * Compares the tree built from `img` (host pids in the image's process order) with the image.
 * Returns what was compared; throws FERRY_VERIFY_MISMATCH on the first difference (all of them
 * in details.mismatches).
 */
export function verifyTree(img: Image, hostPids: readonly number[], opts: VerifyOptions = {}): VerifyReport {
  const t0 = performance.now();
  const msByResource: Record<string, number> = {};
  const timed = <T>(name: string, fn: () => T): T => {
    const t = performance.now();
    try {
      return fn();
    } finally {
      msByResource[name] = (msByResource[name] ?? 0) + (performance.now() - t);
    }
  };
  const read = opts.read ?? ((pid: number) => readProcess(pid));
  const readings = timed('read', () => hostPids.map((pid) => read(pid)));
  const checks: Check[] = [];
  for (const [name, fn] of Object.entries(comparators)) checks.push(...timed(name, () => fn(img, readings, hostPids, opts)));
  let imagePages = 0;
  if (opts.imageMemory !== false)
    timed('memory', () =>
      img.processes.forEach((p, i) => {
        const r = compareImageRuns(p, { pid: p.pid, hostPid: hostPids[i]! }, opts.dir ?? null);
        checks.push(r.check);
        imagePages += r.pages;
      }),
    );
  const landing = opts.landing ?? [];
  const final = landing.at(-1) ?? { pages: 0, ms: 0 };
  const precopy = landing.slice(0, -1);
  const checked: Record<string, string[]> = {};
  const notVerified = new Map<string, string>();
  for (const c of checks) {
    for (const [res, fields] of c.checked) checked[res] = [...new Set([...(checked[res] ?? []), ...fields])];
    for (const [k, v] of c.notVerified) notVerified.set(k, v);
  }
  if (landing.length > 0) checked.memory = [...(checked.memory ?? []), 'pages as they landed (read back after writing)'];
  if (landing.length > 0) notVerified.set('memory: pre-copied pages after they landed', 'checked once as they landed, not swept again at the end');
  notVerified.set('memory: shared memory contents', 'not compared yet');
  const mismatches = checks.flatMap((c) => c.mismatches);
  msByResource.landingFinal = final.ms;
  const report: VerifyReport = {
    processes: img.processes.length,
    checked,
    notVerified: [...notVerified].map(([what, why]) => ({ what, why })),
    pagesChecked: { precopy: precopy.reduce((a, r) => a + r.pages, 0), downtime: final.pages + imagePages },
    outsideMs: precopy.reduce((a, r) => a + r.ms, 0),
    insideMs: performance.now() - t0 + final.ms,
    msByResource,
    mismatches,
  };
  if (chan.hasSubscribers) chan.publish({ kind: 'verified', report });
  if (mismatches.length > 0) {
    const err = mismatchError(mismatches[0]!, mismatches.length - 1);
    err.details!.mismatches = mismatches.slice(0, 20);
    throw err;
  }
  return report;
}
