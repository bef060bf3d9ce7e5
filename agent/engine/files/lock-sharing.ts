// File locks across hosts that share storage. A live migration does not hand a lock over: between
// its release on the source and its taking on the destination, another process (one blocked
// waiting for it, say) could take it, and then neither the destination nor a rollback could get
// it back. So the destination checks at preflight, before anything is frozen, whether it sees the
// tree's locks held: in its own /proc/locks (one kernel, any file system, every kind), and for
// byte-range locks through F_OFD_GETLK on its own open of the file, which also asks an NFS
// server (NFS emulates flock as whole-file POSIX locks). A write lock seen held (or any lock
// that conflicts) is refused. Shared locks travel even on shared storage: the destination takes
// its read lock, shared flock or read lease beside the frozen source's, before that one goes.
// Nothing here takes or breaks a lock: leases are looked for only in /proc/locks, and a file
// with a lease or delegation on it anywhere either host can see is never opened (any open breaks
// a write lease; on NFS a read open recalls another client's write delegation).
import { readFileSync, statSync, statfsSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { HeldLock } from '../../../shared/migration.ts';
import { O, closeFd, openFile, sys } from '../../ffi/syscalls.ts';
import { commOf } from '../namespaces/namespaces.ts';
import { type LockLine, describeLock, devKey, parseLocks, parseProcLocks } from './locks.ts';
import { fdTarget, listFds } from '../process/procfs.ts';
import { readAhead } from '../process/read-ahead.ts';

/** A file as one host sees it. */
export interface FileId {
  dev: string;
  ino: bigint;
  /** A regular file or directory: opening it for a probe has no side effect beyond breaking leases. */
  plain: boolean;
}

/** A lock a probe found: the first one over the range, as F_OFD_GETLK reports it. */
export interface ProbedLock {
  write: boolean;
  start: number;
  end: number | null;
  /** -1 for an OFD lock; 0 when held through an NFS server by another host. */
  pid: number;
}

/** What the destination can look at (a fake in unit tests). */
export interface LockView {
  /** The file at this path on this host, null when there is none. */
  stat(path: string): FileId | null;
  /** Held entries of this host's /proc/locks. */
  procLocks(): LockLine[];
  /**
   * F_OFD_GETLK over [start, end] through this host's own read-only open of the path: for a write
   * lock it reports any lock there, for a read lock only a write lock (the one that conflicts).
   */
  probe(path: string, start: number, end: number | null, write: boolean): ProbedLock | null;
}

const LEASE_LIKE = new Set(['LEASE', 'DELEG']);

/** dev_t as Node's stat gives it (glibc's makedev) to the "major:minor" key /proc/locks lines get. */
export function devOf(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return devKey(major, minor);
}

function fileId(path: string): FileId | null {
  try {
    const st = statSync(path, { bigint: true });
    return { dev: devOf(st.dev), ino: st.ino, plain: st.isFile() || st.isDirectory() };
  } catch {
    return null;
  }
}

/** File systems other hosts may share (statfs f_type): a lease there cannot be checked from the destination. */
const NETWORK_FS: Record<number, string> = {
  0x6969: 'NFS',
  0x517b: 'SMB',
  0xfe534d42: 'SMB2',
  0xff534d42: 'CIFS',
  0x00c36400: 'CephFS',
  0x01021997: '9p',
  0x5346414f: 'AFS',
  0x6b414653: 'AFS',
  0x73757245: 'Coda',
  0x01161970: 'GFS2',
  0x7461636f: 'OCFS2',
  0x0bd00bd0: 'Lustre',
  0x47504653: 'GPFS',
  0x13661366: 'OrangeFS',
};

/** The network file system `path` is on, null for a local one (or when it cannot be told). */
export function networkFsOf(path: string): string | null {
  try {
    return NETWORK_FS[statfsSync(path).type] ?? null;
  } catch {
    return null;
  }
}

// --- source ------------------------------------------------------------------------------------

/** Every lock the tree holds through a file with a path, once per (file, kind, mode, range). */
export function heldLocks(pids: readonly number[]): HeldLock[] {
  const leased = new Set(
    parseProcLocks(readFileSync('/proc/locks', 'utf8'))
      .filter((l) => LEASE_LIKE.has(l.raw))
      .map((l) => `${l.dev}:${l.ino}`),
  );
  const out = new Map<string, HeldLock>();
  for (const pid of pids) {
    const comm = commOf(pid);
    let fds: number[];
    try {
      fds = listFds(pid);
    } catch {
      continue; // exited meanwhile: the freeze lists the tree again
    }
    for (const fd of fds) {
      try {
        const path = fdTarget(pid, fd);
        // A deleted file is made anew at restore (a file of its own); memfds and sockets have no path to share.
        if (!path.startsWith('/') || path.endsWith(' (deleted)')) continue;
        const { locks } = parseLocks(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
        if (locks.length === 0) continue;
        const id = fileId(`/proc/${pid}/fd/${fd}`);
        for (const l of locks) {
          const key = `${path}|${l.kind}|${l.write}|${l.start}|${l.end}`;
          if (!out.has(key)) out.set(key, { pid, comm, fd, path, ...l, leased: id !== null && leased.has(`${id.dev}:${id.ino}`) });
        }
      } catch {
        // closed under the look
      }
    }
  }
  return [...out.values()];
}

// --- destination -------------------------------------------------------------------------------

/** How the destination sees one of the tree's locks held, for the refusal. */
export interface SeenLock {
  lock: HeldLock;
  /** The same lock (kind, mode, range): the source's own, seen through shared storage. */
  same: boolean;
  /** What was seen, in words. */
  how: string;
}

/** Locks of one family conflict with each other: POSIX and OFD locks share the byte-range list. */
const FAMILY: Record<HeldLock['kind'], string> = { posix: 'range', ofd: 'range', flock: 'flock', lease: 'lease' };
const range = (start: number, end: number | null) => `bytes ${start}-${end === null ? 'EOF' : end}`;
const overlaps = (a: { start: number; end: number | null }, b: { start: number; end: number | null }) =>
  (a.end === null || a.end >= b.start) && (b.end === null || b.end >= a.start);

/** The destination's verdict on one lock: null when it sees nothing that stands in its way. */
export function seenLock(l: HeldLock, all: readonly HeldLock[], view: LockView, procLocks: readonly LockLine[]): SeenLock | null {
  const file = view.stat(l.path);
  if (!file) return null; // not here at all: restore finds that out (it cannot open the file)
  const onFile = procLocks.filter((e) => e.dev === file.dev && e.ino === file.ino);
  for (const e of onFile) {
    if (!e.kind || FAMILY[e.kind] !== FAMILY[l.kind] || !overlaps(e, l)) continue;
    const same = e.kind === l.kind && (e.type === 'WRITE') === l.write && e.type !== 'UNLCK' && e.start === l.start && e.end === l.end;
    // A read lock (or shared flock, read lease) is taken again beside the source's, before that
    // one goes: no window, so it travels even on shared storage. Anything else conflicts.
    if (e.type === 'READ' && !l.write) continue;
    const state = e.state === 'ADVISORY' || e.state === 'ACTIVE' ? '' : ` ${e.state}`;
    return { lock: l, same, how: `/proc/locks: ${e.raw}${state} ${e.type} on ${range(e.start, e.end)}, pid ${e.pid}` };
  }
  if (l.kind === 'lease' || !file.plain) return null;
  // An open breaks leases and recalls delegations: never open a file with one anywhere in sight.
  if (l.leased || onFile.some((e) => LEASE_LIKE.has(e.raw)) || all.some((o) => o.path === l.path && o.kind === 'lease')) return null;
  // NFS emulates flock as a whole-file POSIX lock; on one kernel flock and POSIX locks do not meet.
  const [start, end] = l.kind === 'flock' ? [0, null] : [l.start, l.end];
  const p = view.probe(l.path, start, end, l.write);
  if (!p || (l.kind === 'flock' && (p.start !== 0 || p.end !== null))) return null;
  if (!p.write && !l.write) return null;
  const same = p.write === l.write && p.start === start && p.end === end;
  const owner = p.pid > 0 ? `pid ${p.pid}` : p.pid === -1 ? 'an OFD lock' : 'held through the file server';
  return { lock: l, same, how: `F_OFD_GETLK on its own open of the file: ${p.write ? 'WRITE' : 'READ'} on ${range(p.start, p.end)}, ${owner}` };
}

/** Refuses, before anything is frozen, a tree whose locks this host sees held; `hosts` name both sides. */
export function refuseSharedLocks(locks: readonly HeldLock[], hosts: { source: string; destination: string }, view: LockView = hostLockView()): void {
  if (locks.length === 0) return;
  const procLocks = view.procLocks();
  const seen = locks.map((l) => seenLock(l, locks, view, procLocks)).filter((s): s is SeenLock => s !== null);
  const first = seen[0];
  if (!first) return;
  throw new FerryError(ErrorCode.Unsupported, sharedLockMessage(first, hosts), {
    retryable: false,
    details: {
      pid: first.lock.pid,
      comm: first.lock.comm,
      where: `fd ${first.lock.fd}`,
      kind: 'file lock',
      path: first.lock.path,
      lock: { kind: first.lock.kind, write: first.lock.write, start: first.lock.start, end: first.lock.end },
      problems: seen.map((s) => ({ pid: s.lock.pid, fd: s.lock.fd, path: s.lock.path, lock: describeLock(s.lock), seen: s.how })),
    },
  });
}

export function sharedLockMessage(s: SeenLock, { source, destination }: { source: string; destination: string }): string {
  const l = s.lock;
  const why = s.same
    ? `${destination} sees it held (${s.how}), so the file is on storage ${destination} shares with ${source}`
    : `${destination} sees a conflicting lock on the file (${s.how}): the file is on storage ${destination} shares with ${source}, or another process there holds it`;
  return (
    `pid ${l.pid} (${l.comm}) fd ${l.fd} (${l.path}): its ${describeLock(l)} cannot be carried to ${destination}: ${why}. ` +
    `ferry does not hand a lock from one host to another: between its release on ${source} and its taking on ${destination} another process (one waiting for it, say) could take it. ` +
    `Release the lock before migrating, migrate to a host that does not share this file system, or stop the workload and start it on ${destination}.`
  );
}

const F_OFD_GETLK = 36;
const F_RDLCK = 0;
const F_WRLCK = 1;
const O_NOCTTY = 0o400;

/**
 * /proc/locks read ahead on another thread, for a restore's LeaseGuard: reading it takes the
 * kernel's file-lock rwsem for writing, which waits for an RCU grace period (10 ms and more);
 * started when the build starts, that wait overlaps the image's parsing.
 */
export function leaseViewReadAhead(): Pick<LockView, 'procLocks' | 'stat'> {
  const ahead = readAhead('/proc/locks');
  return { stat: fileId, procLocks: () => parseProcLocks(ahead.text()) };
}

/** This host's view: its own stat, /proc/locks, and F_OFD_GETLK through a read-only open. */
export function hostLockView(): LockView {
  return {
    stat: fileId,
    procLocks: () => parseProcLocks(readFileSync('/proc/locks', 'utf8')),
    probe(path, start, end, write) {
      let fd: number;
      try {
        // O_NONBLOCK: a FIFO swapped in under the path, or an NFS open, must not hold the agent.
        fd = openFile(path, O.RDONLY | O.NONBLOCK | O.CLOEXEC | O_NOCTTY);
      } catch {
        return null; // not readable here: restore will say why
      }
      try {
        const fl = Buffer.alloc(32); // struct flock: l_type, l_whence (short), l_start, l_len, l_pid (0 for OFD)
        fl.writeInt16LE(write ? F_WRLCK : F_RDLCK, 0);
        fl.writeBigInt64LE(BigInt(start), 8);
        fl.writeBigInt64LE(end === null ? 0n : BigInt(end - start + 1), 16);
        sys('fcntl', fd, F_OFD_GETLK, fl);
        const type = fl.readInt16LE(0);
        if (type !== F_RDLCK && type !== F_WRLCK) return null;
        const s = Number(fl.readBigInt64LE(8));
        const len = Number(fl.readBigInt64LE(16));
        return { write: type === F_WRLCK, start: s, end: len === 0 ? null : s + len - 1, pid: fl.readInt32LE(24) };
      } catch {
        return null; // a file system without locks: nothing to see
      } finally {
        // Closing drops the closer's own POSIX locks on the file: the agent holds none on workload files.
        closeFd(fd);
      }
    },
  };
}

// --- restore -----------------------------------------------------------------------------------

/**
 * Leases and delegations a restore would break by opening files: the kernel never fails such an
 * open, it breaks the lease (any open breaks a write lease, an open for writing a read lease).
 * On storage shared with a frozen source that lease may be the source's own, which a rollback
 * could not give back; the restore fails before the open instead. Reads /proc/locks once.
 */
export class LeaseGuard {
  #leases: LockLine[] | null = null;
  readonly #view: Pick<LockView, 'procLocks' | 'stat'>;

  constructor(view: Pick<LockView, 'procLocks' | 'stat'> = hostLockView()) {
    this.#view = view;
  }

  /** Read at the first open that needs it, once for the whole restore. */
  get #held(): LockLine[] {
    return (this.#leases ??= this.#view.procLocks().filter((l) => LEASE_LIKE.has(l.raw)));
  }

  /** Throws when opening `path` with these open flags would break a lease here. */
  check(pid: number, where: string, path: string, flags: number): void {
    if (this.#held.length === 0) return;
    const file = this.#view.stat(path);
    if (!file) return;
    const writing = (flags & 3) !== 0;
    const hit = this.#held.find((l) => l.dev === file.dev && l.ino === file.ino && (writing || l.type !== 'READ'));
    if (!hit) return;
    throw new FerryError(
      ErrorCode.Conflict,
      `pid ${pid} ${where} (${path}): opening the file here would break the ${hit.type === 'READ' ? 'read' : 'write'} ${hit.raw === 'DELEG' ? 'delegation' : 'lease'} pid ${hit.pid} holds on it ` +
        `(/proc/locks: ${hit.raw} ${hit.state} ${hit.type}; on storage shared with the source host it may be the checkpointed process's own): not opened`,
      { retryable: false, details: { pid, where, path, lease: { kind: hit.raw, type: hit.type, pid: hit.pid } } },
    );
  }
}
