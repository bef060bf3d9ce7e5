// Which tracker a process gets, and why. uffd-WP + PAGEMAP_SCAN is exact and cheap; hashing is
// the fallback that works anywhere process_vm_readv does. Soft-dirty would sit between them,
// but only kernels with CONFIG_MEM_SOFT_DIRTY have it, and ferry has no soft-dirty tracker yet.
import { ErrorCode, FerryError } from '../../../../shared/errors.ts';
import { O, closeFd, openFile, sys, vmWrite } from '../../../ffi/syscalls.ts';
import { PAGE_IS, PM_SCAN, PagemapScanner, type ScanRegion, UFFD_FEATURE, UFFD_OPEN_FLAGS, uffdApi, uffdRegisterWp } from '../../../ffi/uffd.ts';
import { type KernelProbes, probeKernelSync } from '../../probes.ts';
import { readStat } from '../../process/procfs.ts';
import { HashTracker, defaultHasher } from './hash.ts';
import { UffdTracker } from './uffd.ts';
import type { MethodChoice, ProcessTracker, TrackMethod } from './types.ts';

export type MethodRequest = 'auto' | TrackMethod;

/** What this host can do, decided once per tracker from the kernel probes. */
export interface TrackerPlan {
  uffd: { ok: boolean; reason: string };
  softDirty: { ok: boolean; reason: string };
  hash: { ok: boolean; reason: string; hasher: string; pagemapScan: boolean };
}

/** Pure: the plan for a set of probe results (and the uffd self-test's verdict). */
export function planTracking(p: Pick<KernelProbes, 'uffdWpAsync' | 'pagemapScan' | 'softDirty'>, selfTest: { ok: boolean; reason: string }, hasherName: string): TrackerPlan {
  const uffd = !p.uffdWpAsync
    ? { ok: false, reason: 'kernel has no userfaultfd write-protect in async mode (UFFD_FEATURE_WP_ASYNC, Linux 6.7+)' }
    : !p.pagemapScan
      ? { ok: false, reason: 'kernel has no PAGEMAP_SCAN ioctl (Linux 6.7+)' }
      : !selfTest.ok
        ? { ok: false, reason: `uffd-wp self-test failed: ${selfTest.reason}` }
        : { ok: true, reason: 'userfaultfd WP_ASYNC + PAGEMAP_SCAN available and exact on this kernel' };
  const softDirty = p.softDirty
    ? { ok: false, reason: 'kernel has soft-dirty bits, but ferry has no soft-dirty tracker' }
    : { ok: false, reason: 'kernel built without CONFIG_MEM_SOFT_DIRTY' };
  return { uffd, softDirty, hash: { ok: true, reason: `content hashing (${hasherName})`, hasher: hasherName, pagemapScan: p.pagemapScan } };
}

let selfTestResult: { ok: boolean; reason: string } | null = null;

/**
 * Checks, on this agent's own memory, the kernel behaviour exactness rests on: a freshly
 * registered range reports every page (unpopulated ones too) as written; a scan re-protects; a
 * write shows up; and a whole 2 MiB block dropped with MADV_DONTNEED (which may free its page
 * table) comes back as written. Kernels before the fix for the last one would lose such pages.
 * About a millisecond; cached.
 */
export function uffdSelfTest(): { ok: boolean; reason: string } {
  if (selfTestResult) return selfTestResult;
  const size = 4 << 20;
  let uffd = -1;
  let pm = -1;
  let raw = 0;
  try {
    uffd = sys('userfaultfd', UFFD_OPEN_FLAGS);
    uffdApi(uffd, UFFD_FEATURE.WP_ASYNC | UFFD_FEATURE.WP_UNPOPULATED);
    pm = openFile('/proc/self/pagemap', O.RDONLY | O.CLOEXEC);
    raw = sys('mmap', 0, size * 2, 3, 0x22, -1, 0);
    const base = Math.ceil(raw / size) * size; // 2 MiB aligned, whole page tables
    const scanner = new PagemapScanner(64);
    const scan = (): ScanRegion[] => {
      const out: ScanRegion[] = [];
      scanner.scan(pm, { flags: PM_SCAN.WP_MATCHING | PM_SCAN.CHECK_WPASYNC, start: base, end: base + size, categoryMask: PAGE_IS.WRITTEN, returnMask: PAGE_IS.PRESENT }, out);
      return out;
    };
    const pagesOf = (rs: ScanRegion[]) => rs.reduce((a, r) => a + (r.end - r.start) / 4096, 0);
    const block = Buffer.alloc(2 << 20, 0x5a);
    vmWrite(process.pid, BigInt(base), block.subarray(0, 4096));
    uffdRegisterWp(uffd, base, size);
    let got = pagesOf(scan());
    if (got !== size / 4096) return (selfTestResult = { ok: false, reason: `a fresh range reported ${got} of ${size / 4096} pages` });
    if ((got = pagesOf(scan())) !== 0) return (selfTestResult = { ok: false, reason: `a scan left ${got} pages unprotected` });
    vmWrite(process.pid, BigInt(base + 2 * 4096), block.subarray(0, 4096));
    if ((got = pagesOf(scan())) !== 1) return (selfTestResult = { ok: false, reason: `one write reported as ${got} pages` });
    vmWrite(process.pid, BigInt(base + (2 << 20)), block);
    scan();
    sys('madvise', base + (2 << 20), 2 << 20, 4); // MADV_DONTNEED
    if ((got = pagesOf(scan())) !== 512) return (selfTestResult = { ok: false, reason: `a dropped 2 MiB block reported ${got} of 512 pages` });
    return (selfTestResult = { ok: true, reason: 'ok' });
  } catch (err) {
    return (selfTestResult = { ok: false, reason: (err as Error).message });
  } finally {
    if (raw) sys('munmap', raw, size * 2);
    if (pm >= 0) closeFd(pm);
    if (uffd >= 0) closeFd(uffd);
  }
}

export function defaultPlan(): TrackerPlan {
  const p = probeKernelSync();
  return planTracking(p, p.uffdWpAsync && p.pagemapScan ? uffdSelfTest() : { ok: false, reason: 'not run' }, defaultHasher().name);
}

export interface Opened {
  tracker: ProcessTracker;
  choice: MethodChoice;
}

/**
 * Trackers for new processes: uffd-wp where the plan allows it and the process takes it, else
 * hashing with the reason. Injection needs a brief stop; `allowInject: false` (the tree is
 * frozen for the final round, or stopped by someone else) goes straight to hashing, whose first
 * scan reports everything, which is what a process seen for the first time needs anyway.
 */
export function openTrackers(pids: readonly number[], plan: TrackerPlan, opts: { request: MethodRequest; allowInject: boolean }): Map<number, Opened> {
  const out = new Map<number, Opened>();
  const fallback = (pid: number, why: string) => out.set(pid, { tracker: new HashTracker(pid, { pagemapScan: plan.hash.pagemapScan }), choice: { method: 'hash', reason: why } });
  if (opts.request === 'uffd-wp' && !plan.uffd.ok) throw new FerryError(ErrorCode.Unsupported, `uffd-wp tracking requested: ${plan.uffd.reason}`);
  const candidates: number[] = [];
  for (const pid of pids) {
    if (opts.request === 'hash') fallback(pid, `hashing requested (${plan.hash.reason})`);
    else if (!plan.uffd.ok) fallback(pid, `${plan.uffd.reason}; ${plan.softDirty.reason}; using ${plan.hash.reason}`);
    else if (!opts.allowInject) fallback(pid, 'new process while injection is not allowed (frozen tree): first scan sends it whole by hashing');
    else if (isStopped(pid)) fallback(pid, 'process is stopped: the injection stop would resume it');
    else candidates.push(pid);
  }
  if (candidates.length === 0) return out;
  const started = UffdTracker.startMany(candidates);
  const refused = [...started].filter(([, t]) => !(t instanceof UffdTracker));
  if (opts.request === 'uffd-wp' && refused.length > 0) {
    for (const t of started.values()) if (t instanceof UffdTracker) t.stop();
    const [pid, e] = refused[0]!;
    throw new FerryError(ErrorCode.Unsupported, `uffd-wp tracking requested, refused for pid ${pid}: ${String((e as FerryError).details?.reason ?? (e as FerryError).message)}`, { cause: e });
  }
  for (const [pid, t] of started) {
    if (t instanceof UffdTracker) out.set(pid, { tracker: t, choice: { method: 'uffd-wp', reason: plan.uffd.reason } });
    else fallback(pid, `${String(t.details?.reason ?? t.message)}; using ${plan.hash.reason}`);
  }
  return out;
}

function isStopped(pid: number): boolean {
  try {
    return readStat(pid).f(3) === 'T';
  } catch {
    return false;
  }
}
