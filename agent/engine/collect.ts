// Reading one stopped process into a ProcessImage (everything but its pages). The tasks must be
// in the group-stop of a FrozenTree: a few values only exist behind an injected syscall.
// Threads, signals and timers are read by their own modules in process/, beside their restore.
import { readFileSync, readlinkSync } from 'node:fs';
import { type FdImage, type MmImage, type ProcessImage, type Vma, type VmaKind, pagesFileName, toHex } from '../../shared/image-format.ts';
import { sys } from '../ffi/syscalls.ts';
import { SYS } from '../ffi/libc.ts';
import { epollEntries } from './files/epoll.ts';
import { injectStep, injectStepOk, outArea, readOut } from './process/inject.ts';
import { parseLocks } from './files/locks.ts';
import { fdKind, isShm, pidfdTarget } from './preflight.ts';
import { type MapEntry, fdTarget, listChildren, listFds, readFdinfo, readStat, readStatus, zombieStatus } from './process/procfs.ts';
import { collectSigactions, pendingOf } from './process/signals.ts';
import { collectThread } from './process/threads.ts';
import { collectItimers, collectPosixTimers } from './process/timers.ts';
import type { ReadAhead } from './process/read-ahead.ts';

/** A chroot's directory, as the host sees it. */
function rootOf(pid: number): { root?: string } {
  const root = readlinkSync(`/proc/${pid}/root`);
  return root === '/' ? {} : { root };
}

export function vmaKind(m: MapEntry): VmaKind {
  switch (m.path) {
    case '[heap]':
      return 'heap';
    case '[stack]':
      return 'stack';
    case '[vdso]':
      return 'vdso';
    case '[vvar]':
      return 'vvar';
    case '[vvar_vclock]':
      return 'vvar_vclock';
    case '[vsyscall]':
      return 'vsyscall';
  }
  if (isShm(m)) return 'shm';
  if (m.path.startsWith('/')) return m.perms[3] === 's' ? 'file-shared' : 'file-private';
  return 'anon';
}

/** prctl state the kernel keeps per process (PR_GET_CHILD_SUBREAPER, PR_GET_THP_DISABLE, PR_GET_DUMPABLE). */
function collectPrctl(pid: number, site: bigint, maps: readonly MapEntry[]): NonNullable<ProcessImage['prctl']> {
  const out = outArea(pid, maps);
  injectStepOk(pid, site, 'prctl', [37, out]);
  const subreaper = readOut(pid, out, 4).readInt32LE(0) !== 0;
  const thpDisable = injectStepOk(pid, site, 'prctl', [42, 0, 0, 0, 0]) !== 0n;
  const dumpable = Number(injectStepOk(pid, site, 'prctl', [3]));
  return { subreaper, thpDisable, dumpable };
}

/**
 * membarrier has no query for registrations; a private expedited barrier (of each kind) fails
 * with EPERM unless the process registered for it, so issuing one tells. The global expedited
 * registration cannot be probed; it only makes the process a target of others' barriers.
 */
function collectMembarrier(pid: number, site: bigint): NonNullable<ProcessImage['membarrier']> {
  const probes = [
    ['private-expedited', 8],
    ['private-expedited-sync-core', 32],
    ['private-expedited-rseq', 128],
  ] as const;
  return probes.filter(([, cmd]) => injectStep(pid, site, SYS.membarrier, [cmd, 0, 0]) === 0n).map(([name]) => name);
}

/** Exited children not waited for yet, with their wait status (/proc/PID/stat field 52). */
function collectZombies(pid: number): NonNullable<ProcessImage['zombies']> {
  return listChildren(pid).flatMap((c) => {
    const status = zombieStatus(c);
    return status === null ? [] : [{ pid: c, status }];
  });
}

const KCMP_FILE = 0;

const pair = (v: string | undefined): [number, number] => {
  const m = /\((\d+),\s*(\d+)\)/.exec(v ?? '');
  return [Number(m?.[1] ?? 0), Number(m?.[2] ?? 0)];
};

/** State of anon-inode descriptors, as their fdinfo shows it. */
function anonDetails(pid: number, fd: number, img: FdImage): void {
  const info = readFdinfo(pid, fd);
  switch (img.kind) {
    case 'eventfd':
      img.eventfd = { count: toHex(BigInt(`0x${(info.get('eventfd-count') ?? '0').trim()}`)), semaphore: info.get('eventfd-semaphore') === '1' };
      break;
    case 'timerfd':
      img.timerfd = { clockid: Number(info.get('clockid') ?? 1), value: pair(info.get('it_value')), interval: pair(info.get('it_interval')), ticks: Number(info.get('ticks') ?? 0) };
      break;
    case 'pidfd':
      img.pidfd = { pid: pidfdTarget(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')).inner };
      break;
    case 'signalfd':
      img.signalfd = { mask: toHex(BigInt(`0x${info.get('sigmask') ?? '0'}`)) };
      break;
    case 'epoll':
      img.epoll = epollEntries(pid, fd).entries;
      break;
  }
}
function collectFds(pid: number): FdImage[] {
  const fds: FdImage[] = [];
  for (const fd of listFds(pid)) {
    const k = fdKind(pid, fd);
    if ('unsupported' in k) continue; // preflight refused these already
    const info = readFdinfo(pid, fd);
    const flags = Number.parseInt(info.get('flags') ?? '0', 8);
    const img: FdImage = { fd, kind: k.kind, path: fdTarget(pid, fd), flags: flags & ~0o2000000, cloexec: (flags & 0o2000000) !== 0, pos: Number(info.get('pos') ?? 0) };
    anonDetails(pid, fd, img);
    for (const prev of fds) {
      if (prev.dupOf !== undefined) continue;
      if (sys('kcmp', pid, pid, KCMP_FILE, prev.fd, fd) === 0) {
        img.dupOf = prev.fd;
        break;
      }
    }
    // A dup shows the same lock lines as its first fd: they are taken once, through that one.
    if (img.dupOf === undefined && ['file', 'dir', 'chr', 'memfd'].includes(img.kind)) {
      const { locks } = parseLocks(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (locks.length > 0) img.locks = locks;
    }
    fds.push(img);
  }
  return fds;
}

/** /proc/PID/limits lists RLIMIT_* in resource order; prlimit64 on another uid would need CAP_SYS_RESOURCE. */
function collectRlimits(pid: number): ProcessImage['rlimits'] {
  const lines = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').slice(1).filter(Boolean);
  const val = (v: string) => toHex(v === 'unlimited' ? (1n << 64n) - 1n : BigInt(v));
  return lines.slice(0, 16).map((l, resource) => {
    const cols = l.slice(26).trim().split(/\s+/);
    return { resource, cur: val(cols[0] ?? 'unlimited'), max: val(cols[1] ?? 'unlimited') };
  });
}

function collectMm(pid: number, brk: bigint): MmImage {
  const { f } = readStat(pid);
  const h = (n: number) => toHex(BigInt(f(n)));
  return {
    startCode: h(26),
    endCode: h(27),
    startData: h(45),
    endData: h(46),
    startBrk: h(47),
    brk: toHex(brk),
    startStack: h(28),
    argStart: h(48),
    argEnd: h(49),
    envStart: h(50),
    envEnd: h(51),
  };
}

const ADVICE = new Set(['dc', 'wf', 'hg', 'nh', 'dd']);

/** VmFlags per mapping start, from smaps (read ahead on another thread when the caller started it). */
function vmFlagsByStart(pid: number, smaps?: ReadAhead): Map<bigint, string[]> {
  const out = new Map<bigint, string[]>();
  let cur: bigint | null = null;
  const text = smaps ? smaps.text() : readFileSync(`/proc/${pid}/smaps`, 'utf8');
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-[0-9a-f]+ /.exec(line);
    if (m) cur = BigInt(`0x${m[1]}`);
    else if (cur !== null && line.startsWith('VmFlags:')) out.set(cur, line.slice(8).trim().split(/\s+/));
  }
  return out;
}

/** What smaps VmFlags say about a mapping that restore must set again: madvise state, growing down, may-write of shared files. */
function flagsOf(m: MapEntry, flags: readonly string[]): Pick<Vma, 'advice' | 'growsDown' | 'mayWrite'> {
  if (['[vdso]', '[vvar]', '[vvar_vclock]', '[vsyscall]'].includes(m.path)) return {};
  const advice = flags.filter((f) => ADVICE.has(f)) as NonNullable<Vma['advice']>;
  return {
    ...(advice.length > 0 ? { advice } : {}),
    ...(flags.includes('gd') && m.path !== '[stack]' ? { growsDown: true } : {}),
    ...(m.path.startsWith('/') && m.perms[3] === 's' && flags.includes('mw') ? { mayWrite: true } : {}),
  };
}

/** Everything about a process except page contents; vmas come back with empty runs. */
export function collectProcess(pid: number, tids: readonly number[], site: bigint, maps: readonly MapEntry[], smaps?: ReadAhead): ProcessImage {
  const brk = injectStepOk(pid, site, 'brk', [0]);
  const pdOut = outArea(pid, maps);
  injectStepOk(pid, site, 'prctl', [2, pdOut]); // PR_GET_PDEATHSIG
  const pdeathsig = readOut(pid, pdOut, 4).readInt32LE(0);
  const stat = readStat(pid);
  const st = readStatus(pid);
  const threads = [pid, ...tids.filter((t) => t !== pid)].map((tid) => collectThread(pid, tid, site, maps));
  const img: ProcessImage = {
    pid,
    hostPid: pid,
    ppid: Number(stat.f(4)),
    pgid: Number(stat.f(5)),
    sid: Number(stat.f(6)),
    comm: stat.comm,
    exe: readlinkSync(`/proc/${pid}/exe`),
    cwd: readlinkSync(`/proc/${pid}/cwd`),
    ...rootOf(pid),
    umask: Number.parseInt(st.get('Umask') ?? '022', 8),
    personality: Number.parseInt(readFileSync(`/proc/${pid}/personality`, 'utf8').trim(), 16),
    pdeathsig,
    prctl: collectPrctl(pid, site, maps),
    membarrier: collectMembarrier(pid, site),
    zombies: collectZombies(pid),
    pendingShared: pendingOf(pid, true),
    cgroup: readFileSync(`/proc/${pid}/cgroup`, 'utf8').match(/^0::(.*)$/m)?.[1] ?? '/',
    creds: {
      uids: (st.get('Uid') ?? '0 0 0 0').split(/\s+/).map(Number),
      gids: (st.get('Gid') ?? '0 0 0 0').split(/\s+/).map(Number),
      groups: (st.get('Groups') ?? '').split(/\s+/).filter(Boolean).map(Number),
      capInh: toHex(BigInt(`0x${st.get('CapInh') ?? '0'}`)),
      capPrm: toHex(BigInt(`0x${st.get('CapPrm') ?? '0'}`)),
      capEff: toHex(BigInt(`0x${st.get('CapEff') ?? '0'}`)),
      capBnd: toHex(BigInt(`0x${st.get('CapBnd') ?? '0'}`)),
      capAmb: toHex(BigInt(`0x${st.get('CapAmb') ?? '0'}`)),
      noNewPrivs: st.get('NoNewPrivs') === '1',
    },
    mm: collectMm(pid, brk),
    auxv: readFileSync(`/proc/${pid}/auxv`).toString('base64'),
    vmas: [],
    fds: collectFds(pid),
    sigactions: collectSigactions(pid, site, maps),
    rlimits: collectRlimits(pid),
    itimers: collectItimers(pid, site, maps),
    posixTimers: collectPosixTimers(pid, site, maps),
    threads,
    pagesFile: pagesFileName(pid),
    pagesBytes: 0,
  };
  // Last: smaps, read ahead on another thread, has had every injected call above to arrive.
  img.vmas = vmasOf(maps, vmFlagsByStart(pid, smaps));
  return img;
}

function vmasOf(maps: readonly MapEntry[], vmFlags: Map<bigint, string[]>): Vma[] {
  return maps.map((m) => ({
    ...flagsOf(m, vmFlags.get(m.start) ?? []),
    start: toHex(m.start),
    end: toHex(m.end),
    perms: m.perms,
    kind: vmaKind(m),
    ...(m.path.startsWith('/') || m.path.startsWith('[anon_shmem') ? { path: m.path } : {}),
    ...(isShm(m) ? { inode: m.inode } : {}),
    fileOffset: toHex(m.offset),
    runs: [],
  }));
}
