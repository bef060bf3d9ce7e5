// File locks a descriptor holds, as /proc/PID/fdinfo lists them ("lock:" lines), and how a husk
// takes them again. fdinfo shows a POSIX lock only in the process that owns it, on the
// description it was taken through; OFD and flock locks and leases in every holder of their
// description, so a description shared across fork takes them once per holder (same owner: no
// conflict). /proc/locks lists every lock of the host in the same line format.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { FdImage } from '../../../shared/image-format.ts';
import { SyscallError, errnoName } from '../../ffi/syscalls.ts';

export type LockImage = NonNullable<FdImage['locks']>[number];

const KINDS: Record<string, LockImage['kind']> = { POSIX: 'posix', OFDLCK: 'ofd', FLOCK: 'flock', LEASE: 'lease' };
const LABEL: Record<LockImage['kind'], string> = { posix: 'POSIX', ofd: 'OFD', flock: 'flock', lease: 'lease' };

/** One line of /proc/locks or an fdinfo `lock:` line, as the kernel prints it (fs/locks.c lock_get_status). */
export interface LockLine {
  /** POSIX, OFDLCK, FLOCK, LEASE, DELEG (an NFS server's delegation) as printed. */
  raw: string;
  kind: LockImage['kind'] | null;
  /** ADVISORY for locks; ACTIVE, BREAKING or BREAKER for leases. */
  state: string;
  /** READ, WRITE or UNLCK. */
  type: string;
  /** The owner as the reader's pid namespace sees it; -1 for OFD locks. */
  pid: number;
  /** "major:minor" in lower-case hex without leading zeros, as `devKey` makes it. */
  dev: string;
  ino: bigint;
  start: number;
  end: number | null;
  /** A waiter ("->"), not a held lock. */
  blocked: boolean;
}

/** "08:01" and "8:1" alike: the key both sides of a dev:ino comparison use. */
export const devKey = (major: number | bigint, minor: number | bigint): string => `${major.toString(16)}:${minor.toString(16)}`;

/** The text after "N:" of one lock line; null when it is not one. */
export function parseLockLine(text: string): LockLine | null {
  let line = text.trim();
  const blocked = line.startsWith('->');
  if (blocked) line = line.slice(2).trim();
  // POSIX ADVISORY WRITE pid maj:min:ino start end; LEASE ACTIVE READ ...; FLOCK ADVISORY WRITE ...
  const f = line.split(/\s+/);
  const id = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/i.exec(f[4] ?? '');
  if (f.length < 7 || !id) return null;
  return {
    raw: f[0]!,
    kind: KINDS[f[0]!] ?? null,
    state: f[1]!,
    type: f[2]!,
    pid: Number(f[3]),
    dev: devKey(Number.parseInt(id[1]!, 16), Number.parseInt(id[2]!, 16)),
    ino: BigInt(id[3]!),
    start: Number(f[5]),
    end: f[6] === 'EOF' ? null : Number(f[6]),
    blocked,
  };
}

/** Lock lines of one fdinfo text. Blocked waiters ("->") are not held locks: their syscall restarts. */
export function parseLocks(fdinfo: string): { locks: LockImage[]; odd: string[] } {
  const locks: LockImage[] = [];
  const odd: string[] = [];
  for (const m of fdinfo.matchAll(/^lock:\s*\d+:\s*(.*)$/gm)) {
    const text = m[1]!.trim();
    const l = parseLockLine(text);
    if (l?.blocked) continue;
    const kind = l?.kind;
    if (!l || !kind || (l.type !== 'READ' && l.type !== 'WRITE') || (kind === 'lease' ? l.state !== 'ACTIVE' : l.state !== 'ADVISORY')) {
      odd.push(text);
      continue;
    }
    locks.push({ kind, write: l.type === 'WRITE', start: l.start, end: l.end });
  }
  return { locks, odd };
}

/** Held entries of /proc/locks (waiters left out). */
export function parseProcLocks(text: string): LockLine[] {
  const out: LockLine[] = [];
  for (const m of text.matchAll(/^\d+:\s*(.*)$/gm)) {
    const l = parseLockLine(m[1]!);
    if (l && !l.blocked) out.push(l);
  }
  return out;
}

/** "POSIX write lock on bytes 0-9", "flock read lock", "write lease": for messages. */
export function describeLock(l: Pick<LockImage, 'kind' | 'write' | 'start' | 'end'>): string {
  const mode = l.write ? 'write' : 'read';
  if (l.kind === 'lease') return `${mode} lease`;
  const what = `${LABEL[l.kind]} ${mode} lock`;
  return l.kind === 'flock' ? what : `${what} on bytes ${l.start}-${l.end === null ? 'EOF' : l.end}`;
}

const F = { SETLK: 6, OFD_SETLK: 37, SETLEASE: 1024, RDLCK: 0, WRLCK: 1 } as const;
const LOCK = { SH: 1, EX: 2, NB: 4 } as const;

/** One lock as the injected call that takes it: [syscall, args], `flockAt` a 32-byte struct flock in the husk. */
export function lockCall(fd: number, l: LockImage, putFlock: (b: Buffer) => bigint): ['fcntl' | 'flock', (number | bigint)[]] {
  // LOCK_NB: a lock someone else holds fails the restore at once instead of blocking the husk.
  if (l.kind === 'flock') return ['flock', [fd, (l.write ? LOCK.EX : LOCK.SH) | LOCK.NB]];
  if (l.kind === 'lease') return ['fcntl', [fd, F.SETLEASE, l.write ? F.WRLCK : F.RDLCK]];
  const b = Buffer.alloc(32); // struct flock: l_type, l_whence (short), l_start, l_len, l_pid
  b.writeInt16LE(l.write ? F.WRLCK : F.RDLCK, 0);
  b.writeInt16LE(0, 2); // SEEK_SET
  b.writeBigInt64LE(BigInt(l.start), 8);
  b.writeBigInt64LE(l.end === null ? 0n : BigInt(l.end - l.start + 1), 16);
  return ['fcntl', [fd, l.kind === 'ofd' ? F.OFD_SETLK : F.SETLK, putFlock(b)]];
}

/**
 * Why a restore could not take a lock again. Not retryable: while the checkpointed tree holds on
 * (a frozen source on shared storage) or another process keeps a conflicting lock, it stays so.
 */
export function lockNotTaken(pid: number, f: Pick<FdImage, 'fd' | 'path'>, l: LockImage, err: unknown): FerryError {
  const errno = err instanceof SyscallError ? errnoName(err.errno) : null;
  const busy = errno === 'EAGAIN' || errno === 'EWOULDBLOCK' || errno === 'EACCES';
  const shared = 'on storage shared with the source host, the checkpointed process itself may still hold it';
  const why = !busy
    ? (errno ?? (err instanceof Error ? err.message : String(err)))
    : l.kind === 'lease'
      ? `the file is open elsewhere (for writing, or at all for a write lease) or another process holds a lease on it (${shared})`
      : `another process holds a conflicting lock on the file (${shared})`;
  return new FerryError(ErrorCode.Conflict, `pid ${pid} fd ${f.fd} (${f.path}): cannot take its ${describeLock(l)} again: ${errno ? `${errno}: ` : ''}${why}`, {
    retryable: false,
    details: { pid, fd: f.fd, path: f.path, lock: l, ...(errno ? { errno } : {}) },
    cause: err,
  });
}
