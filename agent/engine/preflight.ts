// Finds everything the engine cannot carry before anything is frozen, so a refused checkpoint
// leaves the workload untouched. Reads /proc only.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { FdImage } from '../../shared/image-format.ts';
import { sys } from '../ffi/syscalls.ts';
import { epollEntries } from './files/epoll.ts';
import { networkFsOf } from './files/lock-sharing.ts';
import { parseLocks } from './files/locks.ts';
import { commOf, sysvObjects } from './namespaces/namespaces.ts';
import { classifySocket, clearSocketTables, unixPeerOf, unixTableOf, withTheirFd } from './sockets/classify.ts';
import { sysvUsedBy } from './namespaces/sysv.ts';
import { fdTarget, isGone, listChildren, listFds, readMaps, readStatus, vanished, zombieStatus } from './process/procfs.ts';

const KCMP_FILE = 0;

type FdKind = FdImage['kind'];

export interface Problem {
  pid: number;
  /** "fd 5", "mapping 7f..-7f..", "process" */
  where: string;
  kind: string;
  detail: string;
}

/** Why an anon-inode descriptor the engine does not carry stays behind, for the refusal. */
const NOT_CARRIED: Record<string, string> = {
  inotify: 'inotify watches are not carried yet',
  fanotify: 'fanotify marks and queued events are not carried yet',
  io_uring: 'io_uring rings and requests in flight are not carried',
};

const SUPPORTED_CHR = /^\/dev\/(null|zero|full|random|urandom|tty\d*|pts\/\d+)$/;

const ANON_KINDS: Record<string, FdKind> = { eventfd: 'eventfd', timerfd: 'timerfd', signalfd: 'signalfd', eventpoll: 'epoll', pidfd: 'pidfd' };

export function fdKind(pid: number, fd: number): { kind: FdKind } | { unsupported: string; detail?: string } {
  const t = fdTarget(pid, fd);
  if (t.startsWith('/memfd:')) return { kind: 'memfd' };
  if (t.startsWith('socket:')) return classifySocket(pid, fd, Number(/\d+/.exec(t)?.[0]));
  if (t.startsWith('pipe:')) return { kind: 'pipe' };
  const anon = /^anon_inode:\[?([^\]]+)\]?$/.exec(t);
  if (anon) {
    const k = ANON_KINDS[anon[1] ?? ''];
    if (k) return { kind: k };
    const what = anon[1] ?? 'anon inode';
    return { unsupported: what, detail: `${t}: ${NOT_CARRIED[what] ?? 'not carried by the engine'}` };
  }
  if (!t.startsWith('/')) return { unsupported: t };
  let st;
  try {
    st = statSync(`/proc/${pid}/fd/${fd}`);
  } catch (err) {
    // ENOENT: the fd itself is gone (closed under the look); the caller knows whether that can happen.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    return { unsupported: 'unreachable file' };
  }
  // A regular file deleted while open travels with its content; anything else deleted does not.
  if (t.endsWith(' (deleted)')) return st.isFile() ? { kind: 'file' } : { unsupported: `deleted ${st.isDirectory() ? 'directory' : 'special file'}` };
  if (st.isFile()) return { kind: 'file' };
  if (st.isDirectory()) return { kind: 'dir' };
  if (st.isCharacterDevice() && SUPPORTED_CHR.test(t)) return { kind: 'chr' };
  if (st.isCharacterDevice() && /^\/dev\/(pts\/)?ptmx$/.test(t)) return { unsupported: 'pseudo-terminal master', detail: `${t}: pseudo-terminals are not carried yet` };
  if (st.isFIFO()) return { kind: 'fifo' };
  return { unsupported: `device ${t}` };
}

/** Shared memory the engine carries: MAP_SHARED anonymous memory and shared memfd mappings. */
export const isShm = (m: { perms: string; path: string; inode: number }): boolean =>
  m.perms[3] === 's' && m.inode !== 0 && (m.path.startsWith('/dev/zero') || m.path.startsWith('/memfd:') || m.path === '[anon_shmem]');

const NS_WHY: Record<string, string> = {
  user: ' (user namespaces, as unprivileged containers use, are not carried yet)',
  ipc: ' (restore would give it an empty one)',
};

/** What a process's own IPC namespace holds that would be lost, for the refusal. */
function ipcContent(pid: number): string {
  const objs = sysvObjects(pid);
  return objs.length > 0 ? `; it holds ${objs.join(', ')}` : '';
}

const SPECIAL = new Set(['[heap]', '[stack]', '[vdso]', '[vvar]', '[vvar_vclock]', '[vsyscall]', '']);

function nsOf(pid: number, ns: string): string {
  return readlinkSync(`/proc/${pid}/ns/${ns}`);
}

/** Every problem in one process; an empty list means the engine can carry it. */
export interface PreflightOptions {
  allowChildren?: boolean;
  container?: boolean;
  /** The tree is already seized by this agent (a re-check after the freeze). */
  tracedByUs?: boolean;
  /** A live migration: its pre-copy maps files by path, so a deleted file's mapping cannot take part. */
  migration?: boolean;
}

export function preflightProcess(pid: number, opts: PreflightOptions = {}): Problem[] {
  const out: Problem[] = [];
  const status = readStatus(pid);
  const add = (where: string, kind: string, detail: string) => out.push({ pid, where, kind, detail });
  const tracer = status.get('TracerPid');
  if (tracer !== '0' && !(opts.tracedByUs && tracer === String(process.pid))) add('process', 'ptraced', `already traced by pid ${status.get('TracerPid')}`);
  if (status.get('Seccomp') !== '0') add('process', 'seccomp', `seccomp mode ${status.get('Seccomp')}`);
  // A chroot is carried (husk.enterRoot): its directory by the path the host sees, as for cwd.
  const root = readlinkSync(`/proc/${pid}/root`);
  const kids = listChildren(pid);
  if (!opts.allowChildren && kids.length > 0) add('process', 'child process', `has children ${kids.join(',')} (process trees are not supported yet)`);
  for (const k of kids) {
    // A zombie comes back by exiting again the same way; a core dump cannot be made again without writing one.
    const st = zombieStatus(k);
    if (st !== null && (st & 0x80) !== 0) add('process', 'zombie child', `child ${k} was killed by signal ${st & 0x7f} with a core dump and is not waited for yet`);
  }
  // A container brings its own pid/uts/ipc/time/mount namespaces (checked by isContainer); anything else must share ours.
  // A network namespace of its own is the caller's to rebuild (see agent/net); the tree must share one (treeProblems).
  for (const ns of opts.container ? [] : ['pid', 'uts', 'ipc', 'time', 'mnt', 'user']) {
    try {
      if (nsOf(pid, ns) !== nsOf(process.pid, ns)) add('process', `${ns} namespace`, `runs in its own ${ns} namespace${NS_WHY[ns] ?? ''}${ns === 'ipc' ? ipcContent(pid) : ''}`);
    } catch {
      // namespace kind not present on this kernel
    }
  }
  for (const fd of listFds(pid)) {
    // A running workload opens and closes fds while we look: one that was closed (or replaced)
    // under the look is skipped, since the check after the freeze sees the fds as they stay.
    const target = targetOrNull(pid, fd);
    if (target === null) continue;
    let k: ReturnType<typeof fdKind>;
    try {
      k = fdKind(pid, fd);
    } catch (err) {
      // ENOENT from /proc of a live process: this fd was closed under the look (maybe reopened).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !isGone(pid)) continue;
      throw err;
    }
    if ('unsupported' in k && targetOrNull(pid, fd) === target) add(`fd ${fd}`, k.unsupported, k.detail ?? target);
    else if ('kind' in k) for (const [kind, detail] of fdStateProblems(pid, fd, k.kind, root, opts.migration === true)) add(`fd ${fd} (${target})`, kind, detail);
  }
  for (const m of readMaps(pid)) {
    const where = `mapping ${m.start.toString(16)}-${m.end.toString(16)}`;
    if (m.path.startsWith('/SYSV')) add(where, 'SysV shared memory', m.path);
    else if (m.path === '/[aio] (deleted)') add(where, 'AIO ring', `${m.path}: a Linux AIO context (io_setup) and its requests in flight are not carried`);
    else if (m.path.startsWith('anon_inode:')) add(where, `${m.path} mapping`, `${m.path}: memory of a kernel object the engine does not carry`);
    else if (isShm(m)) continue;
    else if (m.path.startsWith('/memfd:')) add(where, 'private memfd mapping', m.path);
    else if (m.path.endsWith(' (deleted)') && (opts.migration || !m.path.startsWith('/')))
      add(where, 'deleted file mapping', `${m.path}${opts.migration ? ': a live migration cannot carry it yet (checkpoint/restore can)' : ''}`);
    else if (m.perms[3] === 's' && m.inode === 0) add(where, 'shared anonymous memory', m.path || '[anon shared]');
    else if (m.path.startsWith('[') && !SPECIAL.has(m.path) && !m.path.startsWith('[anon:') && !m.path.startsWith('[stack:')) add(where, 'special mapping', m.path);
  }
  return out;
}

/** What a carried kind of fd may still hold that the engine cannot carry: odd lock states, epoll registrations out of reach. */
function fdStateProblems(pid: number, fd: number, kind: FdKind, root: string, migration: boolean): [string, string][] {
  try {
    if (kind === 'unix' && root !== '/') {
      // Its name is a path inside the chroot; restore binds sockets from outside it.
      const name = unixTableOf(pid).get(Number(/\d+/.exec(fdTarget(pid, fd))?.[0]))?.name;
      if (name && !name.startsWith('@')) return [['unix socket in a chroot', `bound to ${name} inside root ${root}; path-named unix sockets of a chrooted process are not carried yet`]];
    }
    if (kind === 'epoll')
      return epollEntries(pid, fd).lost.map((tfd) => ['epoll registration', `fd ${tfd} it watches was closed here; only another process holds that file now`]);
    if (kind === 'file' || kind === 'dir' || kind === 'chr' || kind === 'memfd') {
      const { locks, odd } = parseLocks(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      const out: [string, string][] = odd.map((line) => ['file lock', `in a state the engine cannot take again: ${line}`]);
      const fs = migration && locks.some((l) => l.kind === 'lease') ? networkFsOf(`/proc/${pid}/fd/${fd}`) : null;
      if (fs) out.push(['file lease', `a lease on a file on ${fs}: the destination cannot check whether it shares this file without opening it, which would break the lease, and ferry does not hand a lease between hosts; release the lease before migrating, or stop the workload and start it on the destination`]);
      return out;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // closed under the look
  }
  return [];
}

/** Where the fd points, or null once it is closed. */
function targetOrNull(pid: number, fd: number): string | null {
  try {
    return fdTarget(pid, fd);
  } catch {
    return null;
  }
}

/** A connected unix socket can travel only when its peer is inside the tree too. */
function socketProblems(pids: readonly number[]): Problem[] {
  const held = new Map<number, { pid: number; fd: number }>();
  for (const pid of pids)
    for (const fd of listFds(pid)) {
      const m = /^socket:\[(\d+)\]$/.exec(fdTarget(pid, fd));
      if (m) held.set(Number(m[1]), { pid, fd });
    }
  const out: Problem[] = [];
  for (const [ino, at] of held) {
    const u = unixTableOf(at.pid).get(ino);
    const peer = u ? unixPeerOf(at.pid, u) : null;
    if (peer && !held.has(peer.ino)) out.push({ ...at, where: `fd ${at.fd}`, kind: 'unix socket', detail: `socket:[${ino}]: its peer is outside the process tree` });
  }
  return out;
}

/**
 * An eventfd, timerfd, signalfd or epoll instance inherited by several processes is one object
 * they all see; the restore recreates one per process, which would split it. Refused until the
 * engine carries such objects shared.
 */
function sharedAnonProblems(pids: readonly number[]): Problem[] {
  const seen: { pid: number; fd: number; kind: string }[] = [];
  const out: Problem[] = [];
  for (const pid of pids) {
    for (const fd of listFds(pid)) {
      const kind = /^anon_inode:\[?(eventfd|timerfd|signalfd|eventpoll)\]?$/.exec(fdTarget(pid, fd))?.[1];
      if (!kind) continue;
      const twin = seen.find((s) => s.pid !== pid && s.kind === kind && sys('kcmp', s.pid, pid, KCMP_FILE, s.fd, fd) === 0);
      if (twin) out.push({ pid, where: `fd ${fd}`, kind, detail: `shared with pid ${twin.pid} fd ${twin.fd}; only one process of the tree may hold it` });
      else seen.push({ pid, fd, kind });
    }
  }
  return out;
}

/** A pidfd travels when it names a live process of the tree: restore opens one on that process's husk. */
function pidfdProblems(pids: readonly number[]): Problem[] {
  const out: Problem[] = [];
  for (const pid of pids) {
    for (const fd of listFds(pid)) {
      if (!/^anon_inode:\[?pidfd\]?$/.test(fdTarget(pid, fd))) continue;
      const target = pidfdTarget(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (target.host <= 0) out.push({ pid, where: `fd ${fd}`, kind: 'pidfd', detail: 'the process it names has exited and been reaped' });
      else if (!pids.includes(target.host)) out.push({ pid, where: `fd ${fd}`, kind: 'pidfd', detail: `it names pid ${target.host}, outside the process tree` });
    }
  }
  return out;
}

/** The pid a pidfd names, on the host and in its innermost pid namespace (fdinfo Pid and NSpid). */
export function pidfdTarget(fdinfo: string): { host: number; inner: number } {
  const host = Number(/^Pid:\s*(-?\d+)/m.exec(fdinfo)?.[1] ?? -1);
  const ns = /^NSpid:\s*([-\d\s]+)$/m.exec(fdinfo)?.[1]?.trim().split(/\s+/) ?? [];
  return { host, inner: Number(ns[ns.length - 1] ?? host) };
}

/** Every process of the tree in one network namespace: the one that restore is given. */
function netnsProblems(pids: readonly number[]): Problem[] {
  const root = pids[0];
  if (root === undefined) return [];
  const want = readlinkSync(`/proc/${root}/ns/net`);
  return pids
    .filter((pid) => readlinkSync(`/proc/${pid}/ns/net`) !== want)
    .map((pid) => ({ pid, where: 'process', kind: 'net namespace', detail: `in another network namespace than the tree's root ${root}` }));
}

/** SysV semaphores and queues of the host's IPC namespace stay on the host, with any SEM_UNDO adjustment (sysv.ts). */
function hostSysvProblems(pids: readonly number[]): Problem[] {
  const own = nsOf(process.pid, 'ipc');
  return sysvUsedBy(pids.filter((pid) => nsOf(pid, 'ipc') === own)).map((u) => ({
    pid: u.pid,
    where: 'process',
    kind: u.kind,
    detail: `id ${u.id} key ${u.key}: ${u.how}; SysV objects of the host's IPC namespace are not carried, nor their SEM_UNDO adjustments`,
  }));
}

/** A pipe can travel only when both of its ends are held inside the tree. */
function pipeProblems(pids: readonly number[]): Problem[] {
  const ends = new Map<string, { r: boolean; w: boolean; pid: number; fd: number }>();
  for (const pid of pids) {
    for (const fd of listFds(pid)) {
      const t = fdTarget(pid, fd);
      if (!t.startsWith('pipe:')) continue;
      const mode = Number.parseInt(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').match(/flags:\s*(\d+)/)?.[1] ?? '0', 8) & 3;
      const e = ends.get(t) ?? { r: false, w: false, pid, fd };
      if (mode === 0) e.r = true;
      else e.w = true;
      ends.set(t, e);
    }
  }
  return [...ends]
    .filter(([, e]) => !(e.r && e.w) && !otherEndClosed(e.pid, e.fd, e.r))
    .map(([t, e]) => ({ pid: e.pid, where: `fd ${e.fd}`, kind: 'pipe', detail: `${t}: its ${e.r ? 'write' : 'read'} end is held outside the process tree` }));
}

/**
 * A pipe whose other end nobody holds any more travels fine (restore closes that end too):
 * poll on a duplicate shows POLLHUP on a read end without writers, POLLERR on a write end without readers.
 */
function otherEndClosed(pid: number, fd: number, readEnd: boolean): boolean {
  const pfd = Buffer.alloc(8); // struct pollfd { int fd; short events, revents }
  return withTheirFd(pid, fd, (mine) => {
    pfd.writeInt32LE(mine, 0);
    pfd.writeInt16LE(readEnd ? 1 : 4, 4); // POLLIN / POLLOUT
    sys('poll', pfd, 1, 0);
    return (pfd.readInt16LE(6) & (readEnd ? 0x10 : 0x8)) !== 0; // POLLHUP / POLLERR
  });
}

/** The root and all its descendants, parents before children. */
export function treeOf(root: number): number[] {
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (out.includes(pid)) continue;
    out.push(pid);
    try {
      queue.push(...listChildren(pid));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Throws Unsupported naming the first problem (all of them in details); NotFound if the pid is gone. */
export function preflight(pids: readonly number[], opts: PreflightOptions = {}): void {
  clearSocketTables();
  const problems: Problem[] = [];
  for (const pid of pids) {
    try {
      problems.push(...preflightProcess(pid, opts));
    } catch (err) {
      if (!vanished(err, pid)) throw err;
      // A child that exited meanwhile is no problem (the freeze lists the tree again); the root is.
      if (pid !== pids[0]) continue;
      throw new FerryError(ErrorCode.NotFound, `process ${pid} does not exist`, { details: { pid } });
    }
  }
  if (problems.length === 0) {
    try {
      problems.push(...netnsProblems(pids), ...pipeProblems(pids), ...socketProblems(pids), ...sharedAnonProblems(pids), ...pidfdProblems(pids), ...hostSysvProblems(pids));
    } catch {
      // a process exited meanwhile: the freeze re-checks the tree
    }
  }
  const first = problems[0];
  if (first) {
    const comm = commOf(first.pid);
    throw new FerryError(ErrorCode.Unsupported, `pid ${first.pid} ${first.where}: ${first.kind} is not supported (${first.detail}); comm ${comm}`, {
      details: { pid: first.pid, comm, where: first.where, kind: first.kind, problems },
    });
  }
}
