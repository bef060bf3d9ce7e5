// Dirty tracking with userfaultfd write-protect in async mode plus PAGEMAP_SCAN: the kernel
// keeps one "written since last scan" bit per page, and each scan returns the written pages and
// re-protects them in one atomic walk. The uffd must belong to the target's own mm, so it is
// created inside the target by one injected syscall during a brief stop, taken over with
// pidfd_getfd and closed in the target: the agent holds the only copy, a fork cannot inherit
// it, and closing it ends the tracking (the target is back to full speed).
import { ErrorCode, FerryError } from '../../../../shared/errors.ts';
import { SYS } from '../../../ffi/libc.ts';
import { O, SyscallError, closeFd, errnoName, isErrno, openFile, pidfdGetfd, pidfdOpen } from '../../../ffi/syscalls.ts';
import { PAGE_IS, PM_SCAN, PagemapScanner, type ScanRegion, UFFD_FEATURE, UFFD_OPEN_FLAGS, isUnregistered, uffdApi, uffdRegisterWp } from '../../../ffi/uffd.ts';
import { FrozenTree } from '../../process/freeze.ts';
import { findSyscallSite, injectStep, injectStepOk } from '../../process/inject.ts';
import { readMaps } from '../../process/procfs.ts';
import { joinAdjacent, normalizeRuns, pagesIn, trackedRanges } from './ranges.ts';
import type { DirtyRun, ProcessDirty, ProcessTracker, TrackedRange } from './types.ts';

const WRITTEN_QUERY = {
  flags: PM_SCAN.WP_MATCHING | PM_SCAN.CHECK_WPASYNC,
  categoryMask: PAGE_IS.WRITTEN,
  returnMask: PAGE_IS.PRESENT | PAGE_IS.SWAPPED | PAGE_IS.PFNZERO,
} as const;

/** Why a uffd tracker cannot go on for this process; the tree tracker decides what replaces it. */
export class UffdLost extends FerryError {
  constructor(
    readonly why: 'mm-gone' | 'busy' | 'unregistrable',
    message: string,
    details: Record<string, unknown>,
  ) {
    super(ErrorCode.Unsupported, message, { details: { why, ...details } });
  }
}

const mmGone = (pid: number) => new UffdLost('mm-gone', `pid ${pid}: its memory was replaced (exec) or released`, { pid });

/** Classifies a failure of userfaultfd inside the target into the reason a fallback reports. */
export function explainUffdFailure(errno: number): string {
  switch (errnoName(errno)) {
    case 'EPERM':
      return 'userfaultfd refused in the target (EPERM: seccomp filter or vm.unprivileged_userfaultfd=0)';
    case 'ENOSYS':
      return 'userfaultfd not available in the target (ENOSYS: seccomp filter or kernel without CONFIG_USERFAULTFD)';
    case 'EINVAL':
      return 'kernel refused UFFD_FEATURE_WP_ASYNC|WP_UNPOPULATED (EINVAL: kernel older than 6.7)';
    case 'EBUSY':
      return 'the target already uses userfaultfd on its memory (EBUSY)';
    default:
      return `userfaultfd setup failed (${errnoName(errno)})`;
  }
}


/**
 * Creates a userfaultfd inside each process and takes it over. All processes are stopped once,
 * together, the way a checkpoint stops them (cgroup freeze, then a SIGSTOP group-stop that
 * survives the agent's death), and released at once. Per pid: the descriptors, or the error.
 */
export function takeUserfaultfds(pids: readonly number[]): Map<number, number | FerryError> {
  const out = new Map<number, number | FerryError>();
  if (pids.length === 0) return out;
  const tree = FrozenTree.freeze(pids);
  try {
    tree.enterGroupStop();
    for (const pid of pids) {
      try {
        out.set(pid, takeOne(pid));
      } catch (err) {
        out.set(pid, FerryError.from(err));
      }
    }
  } finally {
    tree.release();
  }
  return out;
}

/** The uffd, created in the target and now held only by the agent. */
function takeOne(pid: number): number {
  const site = findSyscallSite(pid, readMaps(pid));
  const r = injectStep(pid, site, SYS.userfaultfd, [UFFD_OPEN_FLAGS]);
  if (r < 0n) throw new SyscallError('injected userfaultfd', Number(-r), { pid, reason: explainUffdFailure(Number(-r)) });
  const inTarget = Number(r);
  let pidfd = -1;
  try {
    pidfd = pidfdOpen(pid);
    return pidfdGetfd(pidfd, inTarget);
  } finally {
    if (pidfd >= 0) closeFd(pidfd);
    injectStepOk(pid, site, 'close', [inTarget]);
  }
}

export class UffdTracker implements ProcessTracker {
  readonly method = 'uffd-wp' as const;
  private readonly scanner = new PagemapScanner();
  private closed = false;

  private constructor(
    readonly pid: number,
    private readonly uffd: number,
    private readonly pagemap: number,
  ) {}

  /** Trackers for the processes (one stop for all of them); per pid the tracker or why not. */
  static startMany(pids: readonly number[]): Map<number, UffdTracker | FerryError> {
    const out = new Map<number, UffdTracker | FerryError>();
    let taken: Map<number, number | FerryError>;
    try {
      taken = takeUserfaultfds(pids);
    } catch (err) {
      for (const pid of pids) out.set(pid, FerryError.from(err));
      return out;
    }
    for (const [pid, uffd] of taken) {
      if (uffd instanceof FerryError) {
        out.set(pid, uffd);
        continue;
      }
      let pagemap = -1;
      try {
        uffdApi(uffd, UFFD_FEATURE.WP_ASYNC | UFFD_FEATURE.WP_UNPOPULATED);
        pagemap = openFile(`/proc/${pid}/pagemap`, O.RDONLY | O.CLOEXEC);
        out.set(pid, new UffdTracker(pid, uffd, pagemap));
      } catch (err) {
        for (const fd of [uffd, pagemap]) if (fd >= 0) closeFd(fd);
        out.set(pid, FerryError.from(err));
      }
    }
    return out;
  }

  /**
   * Registers every tracked mapping (a new one is registered for the first time; re-registering
   * is harmless), then scans each. A mapping created between reading maps and scanning makes the
   * scan fail with EPERM: what the kernel reported before failing is kept (those pages are
   * re-protected already) and the round starts over from fresh maps. The first scan of a newly
   * registered mapping reports all of its pages (never protected means written), so mappings
   * that appeared, moved (mremap) or were replaced at the same address are sent whole.
   */
  async scan(): Promise<ProcessDirty> {
    const runs: DirtyRun[] = [];
    let ranges: TrackedRange[] = [];
    for (let attempt = 0; ; attempt++) {
      ranges = trackedRanges(readMaps(this.pid));
      this.registerAll(ranges);
      try {
        for (const span of joinAdjacent(ranges)) this.scanSpan(span, runs);
        break;
      } catch (err) {
        if (isErrno(err, 'ESRCH')) throw mmGone(this.pid); // the pagemap's mm is gone (exec)
        if (!isUnregistered(err)) throw err;
        // A workload that maps and unmaps all the time can win a few races in a row on a loaded host.
        if (attempt >= 100) throw new UffdLost('unregistrable', `pid ${this.pid}: a mapping stays unregistered for write-protect`, { pid: this.pid });
      }
    }
    return { pid: this.pid, method: this.method, ranges, runs: normalizeRuns(runs), pagesScanned: pagesIn(ranges) };
  }

  private registerAll(ranges: readonly TrackedRange[]): void {
    for (const r of ranges) {
      try {
        uffdRegisterWp(this.uffd, r.start, r.end - r.start);
      } catch (err) {
        if (!(err instanceof SyscallError)) throw err;
        const name = errnoName(err.errno);
        // The mm this uffd belongs to is gone: the process exec'd (or is exiting).
        if (name === 'ESRCH') throw mmGone(this.pid);
        if (name === 'EBUSY') throw new UffdLost('busy', explainUffdFailure(err.errno), { pid: this.pid, addr: r.start });
        // EINVAL/ENOMEM: the mapping changed under us; the scan's EPERM brings us back here.
      }
    }
  }

  private scanSpan(span: TrackedRange, runs: DirtyRun[]): void {
    const regions: ScanRegion[] = [];
    try {
      this.scanner.scan(this.pagemap, { ...WRITTEN_QUERY, start: span.start, end: span.end }, regions);
    } finally {
      for (const g of regions) runs.push({ addr: g.start, pages: (g.end - g.start) / 4096, zero: isZeroRegion(g.categories, span.file) });
    }
  }

  noteSent(): void {
    // Write-protection already says what changed; the content sent does not matter.
  }

  stop(): void {
    if (this.closed) return;
    this.closed = true;
    // Closing the only copy of the uffd unregisters every range: the target runs unprotected.
    for (const fd of [this.uffd, this.pagemap]) {
      try {
        closeFd(fd);
      } catch {
        // already closed
      }
    }
  }
}

/**
 * A written page with no data of its own is zero: MADV_DONTNEED'd or never touched (not present,
 * not swapped), or mapped to the shared zero page. In a private file mapping a page without a
 * copy of its own reads as the file's data, so it is sent as data.
 */
export function isZeroRegion(categories: number, file: boolean): boolean {
  const present = (categories & PAGE_IS.PRESENT) !== 0;
  if (present) return (categories & PAGE_IS.PFNZERO) !== 0;
  return !file && (categories & PAGE_IS.SWAPPED) === 0;
}
