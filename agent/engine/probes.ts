// Kernel feature probes the engine and the migration planner decide on. Each probe is cheap,
// measures the real behaviour rather than trusting version numbers, and never throws.
import { existsSync, readFileSync } from 'node:fs';
import { cgroup2Root } from '../cgroups/root.ts';
import { spawnDetached } from './process/detached.ts';
import { NT_X86_XSTATE, PTEV, expectStop, getRegset, interrupt, seize } from '../ffi/ptrace.ts';
import { SYS, addressOf, libc } from '../ffi/libc.ts';
import { O, SyscallError, WALL, WNOHANG, closeFd, killPid, openFile, sys, waitpid } from '../ffi/syscalls.ts';
import { PAGE_IS, PagemapScanner, UFFD_FEATURE, UFFD_OPEN_FLAGS, uffdApi } from '../ffi/uffd.ts';

export interface KernelProbes {
  xsave: { xcr0: string; xstateSize: number } | null;
  uffdWpAsync: boolean;
  pagemapScan: boolean;
  softDirty: boolean;
  clone3SetTid: boolean;
  sealedSystemMappings: boolean;
  timeNamespaces: boolean;
  cgroup2Freezer: boolean;
  ptrace: boolean;
}

const safe = <T>(fallback: T, fn: () => T): T => {
  try {
    return fn();
  } catch {
    return fallback;
  }
};

/** XSTATE layout as seen through ptrace on a throwaway stopped process (XCR0 user mask at byte 464). */
export function probeXsave(): { xcr0: string; xstateSize: number } | null {
  let pid = 0;
  try {
    pid = spawnDetached(['sleep', '30']);
    seize(pid, 0);
    interrupt(pid);
    expectStop(pid, { event: PTEV.STOP }, 2000);
    const x = getRegset(pid, NT_X86_XSTATE);
    if (x.length < 472) return null;
    return { xcr0: `0x${x.readBigUInt64LE(464).toString(16)}`, xstateSize: x.length };
  } catch {
    return null;
  } finally {
    if (pid > 0) reapTracee(pid);
  }
}

/** Kills a process we may be tracing and consumes its exit so no traced zombie is left behind. */
function reapTracee(pid: number): void {
  safe(undefined, () => killPid(pid, 9));
  safe(undefined, () => {
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline) {
      const [r, st] = waitpid(pid, WALL | WNOHANG);
      if (r === pid && ((st & 0x7f) === 0 || (st & 0xff) !== 0x7f)) return;
    }
  });
}

export function probeUffdWpAsync(): boolean {
  let fd = -1;
  try {
    fd = sys('userfaultfd', UFFD_OPEN_FLAGS);
    uffdApi(fd, UFFD_FEATURE.WP_ASYNC | UFFD_FEATURE.WP_UNPOPULATED);
    return true;
  } catch {
    return false;
  } finally {
    if (fd >= 0) safe(undefined, () => closeFd(fd));
  }
}

export function probePagemapScan(): boolean {
  let fd = -1;
  try {
    fd = openFile('/proc/self/pagemap', O.RDONLY | O.CLOEXEC);
    const page = Buffer.alloc(8192);
    page.fill(1);
    const start = Number((addressOf(page) + 4095n) & ~4095n);
    new PagemapScanner(2).scan(fd, { flags: 0, start, end: start + 4096, returnMask: PAGE_IS.PRESENT }, []);
    void page[0];
    return true;
  } catch {
    return false;
  } finally {
    if (fd >= 0) safe(undefined, () => closeFd(fd));
  }
}

/** smaps VmFlags of the first mapping whose line matches. */
function vmFlagsOf(smaps: string, match: (header: string) => boolean): string[] | null {
  let inside = false;
  for (const line of smaps.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inside = match(line);
    else if (inside && line.startsWith('VmFlags:')) return line.slice(8).trim().split(/\s+/);
  }
  return null;
}

// A kernel with CONFIG_MEM_SOFT_DIRTY marks every new VMA VM_SOFTDIRTY ("sd"); without it the flag does not exist.
const probeSoftDirty = (smaps: string): boolean => vmFlagsOf(smaps, () => true)?.includes('sd') ?? false;
const probeSealed = (smaps: string): boolean => vmFlagsOf(smaps, (h) => h.endsWith('[vdso]'))?.includes('sl') ?? false;

/**
 * clone3 with set_tid_size=1 and no set_tid array: a kernel with set_tid support rejects the
 * combination with EINVAL while copying the arguments, before any task is created; one without
 * it says E2BIG (unknown tail) and one without clone3 says ENOSYS.
 */
export function probeClone3SetTid(): boolean {
  const args = Buffer.alloc(88);
  args.writeBigUInt64LE(1n, 72);
  try {
    const r = sys('clone3', args, 88);
    // Unreachable on any sane kernel; a child would be a copy of Node, so end it at once.
    if (r === 0) libc.syscall(SYS.exit_group, 0, 0, 0, 0, 0, 0);
    return false;
  } catch (err) {
    return err instanceof SyscallError && err.errno === 22;
  }
}

/** Whether the kernel seals its special mappings. */
export function sealedSystemMappings(): boolean {
  return probeKernelSync().sealedSystemMappings;
}

let probed: KernelProbes | null = null;

/**
 * The kernel's features, probed once: they cannot change while the process runs, and probing
 * starts and traces a process (milliseconds that a freeze or a restore must not pay again).
 */
export function probeKernelSync(): KernelProbes {
  probed ??= probeAll();
  return probed;
}

let xsaveProbed: ReturnType<typeof probeXsave> | undefined;

/** probeXsave, once (a failed probe is not kept: it may have met a transient limit). */
export function xsaveLayout(): ReturnType<typeof probeXsave> {
  if (xsaveProbed) return xsaveProbed;
  const x = probeXsave();
  if (x) xsaveProbed = x;
  return x;
}

function probeAll(): KernelProbes {
  const smaps = safe('', () => readFileSync('/proc/self/smaps', 'utf8'));
  const xsave = xsaveLayout();
  return {
    xsave,
    uffdWpAsync: probeUffdWpAsync(),
    pagemapScan: probePagemapScan(),
    softDirty: safe(false, () => probeSoftDirty(smaps)),
    clone3SetTid: safe(false, probeClone3SetTid),
    sealedSystemMappings: safe(false, () => probeSealed(smaps)),
    timeNamespaces: safe(false, () => existsSync('/proc/self/ns/time')),
    cgroup2Freezer: safe(false, () => cgroup2Root() !== null),
    ptrace: xsave !== null,
  };
}

export async function probeKernel(): Promise<KernelProbes> {
  return probeKernelSync();
}

