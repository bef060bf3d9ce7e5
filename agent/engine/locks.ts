// File locks a descriptor holds, as /proc/PID/fdinfo lists them ("lock:" lines), and how a husk
// takes them again. fdinfo shows a POSIX lock only in the process that owns it, on the
// description it was taken through; OFD and flock locks and leases in every holder of their
// description, so a description shared across fork takes them once per holder (same owner: no
// conflict).
import type { FdImage } from '../../shared/image-format.ts';

export type LockImage = NonNullable<FdImage['locks']>[number];

const KINDS: Record<string, LockImage['kind']> = { POSIX: 'posix', OFDLCK: 'ofd', FLOCK: 'flock', LEASE: 'lease' };

/** Lock lines of one fdinfo text. Blocked waiters ("->") are not held locks: their syscall restarts. */
export function parseLocks(fdinfo: string): { locks: LockImage[]; odd: string[] } {
  const locks: LockImage[] = [];
  const odd: string[] = [];
  for (const m of fdinfo.matchAll(/^lock:\s*\d+:\s*(.*)$/gm)) {
    const line = m[1]!.trim();
    if (line.startsWith('->')) continue;
    const f = line.split(/\s+/);
    const kind = KINDS[f[0] ?? ''];
    // POSIX ADVISORY WRITE pid maj:min:ino start end; LEASE ACTIVE READ ...; FLOCK ADVISORY WRITE ...
    const type = f[2];
    const state = f[1];
    if (!kind || (type !== 'READ' && type !== 'WRITE') || (kind === 'lease' ? state !== 'ACTIVE' : state !== 'ADVISORY')) {
      odd.push(line);
      continue;
    }
    const end = f[6] === 'EOF' ? null : Number(f[6]);
    locks.push({ kind, write: type === 'WRITE', start: Number(f[5]), end });
  }
  return { locks, odd };
}

const F = { SETLK: 6, OFD_SETLK: 37, SETLEASE: 1024, RDLCK: 0, WRLCK: 1 } as const;
const LOCK = { SH: 1, EX: 2 } as const;

/** One lock as the injected call that takes it: [syscall, args], `flockAt` a 32-byte struct flock in the husk. */
export function lockCall(fd: number, l: LockImage, putFlock: (b: Buffer) => bigint): ['fcntl' | 'flock', (number | bigint)[]] {
  if (l.kind === 'flock') return ['flock', [fd, l.write ? LOCK.EX : LOCK.SH]];
  if (l.kind === 'lease') return ['fcntl', [fd, F.SETLEASE, l.write ? F.WRLCK : F.RDLCK]];
  const b = Buffer.alloc(32); // struct flock: l_type, l_whence (short), l_start, l_len, l_pid
  b.writeInt16LE(l.write ? F.WRLCK : F.RDLCK, 0);
  b.writeInt16LE(0, 2); // SEEK_SET
  b.writeBigInt64LE(BigInt(l.start), 8);
  b.writeBigInt64LE(l.end === null ? 0n : BigInt(l.end - l.start + 1), 16);
  return ['fcntl', [fd, l.kind === 'ofd' ? F.OFD_SETLK : F.SETLK, putFlock(b)]];
}
