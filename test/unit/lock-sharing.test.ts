// File locks at a migration's preflight: the lock lines the kernel prints, and the destination's
// verdict on each of the tree's locks against what it sees (a fake view of the host).
import { describe, expect, it } from 'vitest';
import { type FileId, LeaseGuard, type LockView, type ProbedLock, devOf, refuseSharedLocks, seenLock } from '../../agent/engine/files/lock-sharing.ts';
import { describeLock, lockCall, lockNotTaken, parseLocks, parseProcLocks } from '../../agent/engine/files/locks.ts';
import { SyscallError } from '../../agent/ffi/syscalls.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { AdmitRequest, type HeldLock, PreflightReply } from '../../shared/migration.ts';

const PROC_LOCKS = `1: POSIX  ADVISORY  WRITE 4242 08:01:1001 0 9
1: -> POSIX  ADVISORY  WRITE 5000 08:01:1001 0 9
2: OFDLCK ADVISORY  READ  -1 08:01:1002 20 29
3: FLOCK  ADVISORY  WRITE 4242 00:1a5:1003 0 EOF
4: LEASE  ACTIVE    READ  4242 08:01:1004 0 EOF
5: LEASE  BREAKING  READ  4243 08:01:1005 0 EOF
6: DELEG  ACTIVE    READ  777 08:01:1006 0 EOF
`;

describe('lock lines', () => {
  it('/proc/locks: held entries with kind, type, owner, file and range; waiters left out', () => {
    const ls = parseProcLocks(PROC_LOCKS);
    expect(ls.map((l) => [l.raw, l.kind, l.type, l.pid, l.dev, l.ino, l.start, l.end])).toEqual([
      ['POSIX', 'posix', 'WRITE', 4242, '8:1', 1001n, 0, 9],
      ['OFDLCK', 'ofd', 'READ', -1, '8:1', 1002n, 20, 29],
      ['FLOCK', 'flock', 'WRITE', 4242, '0:1a5', 1003n, 0, null],
      ['LEASE', 'lease', 'READ', 4242, '8:1', 1004n, 0, null],
      ['LEASE', 'lease', 'READ', 4243, '8:1', 1005n, 0, null],
      ['DELEG', null, 'READ', 777, '8:1', 1006n, 0, null],
    ]);
    expect(ls[4]!.state).toBe('BREAKING');
  });

  it('fdinfo: the locks a description holds; a breaking lease is odd, a waiter is not a lock', () => {
    const fdinfo = `pos:\t0\nflags:\t02\nmnt_id:\t30\nino:\t1001\nlock:\t1: POSIX  ADVISORY  WRITE 4242 08:01:1001 0 9\nlock:\t2: -> POSIX  ADVISORY  READ 4242 08:01:1001 20 29\nlock:\t3: LEASE  BREAKING  READ 4242 08:01:1001 0 EOF\n`;
    const { locks, odd } = parseLocks(fdinfo);
    expect(locks).toEqual([{ kind: 'posix', write: true, start: 0, end: 9 }]);
    expect(odd).toEqual(['LEASE  BREAKING  READ 4242 08:01:1001 0 EOF']);
  });

  it("dev_t in glibc's encoding becomes the major:minor /proc/locks prints, large numbers too", () => {
    const makedev = (major: bigint, minor: bigint) => (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
    expect(devOf(makedev(8n, 1n))).toBe('8:1');
    expect(devOf(makedev(0n, 0x1a5n))).toBe('0:1a5');
    expect(devOf(makedev(0x1234n, 0x56789n))).toBe('1234:56789');
  });

  it('a lock in words names kind, mode and range', () => {
    expect(describeLock({ kind: 'posix', write: true, start: 0, end: 9 })).toBe('POSIX write lock on bytes 0-9');
    expect(describeLock({ kind: 'ofd', write: false, start: 20, end: null })).toBe('OFD read lock on bytes 20-EOF');
    expect(describeLock({ kind: 'flock', write: true, start: 0, end: null })).toBe('flock write lock');
    expect(describeLock({ kind: 'lease', write: false, start: 0, end: null })).toBe('read lease');
  });
});

const lock = (l: Partial<HeldLock>): HeldLock => ({ pid: 4242, comm: 'db', fd: 3, path: '/data/f', kind: 'posix', write: true, start: 0, end: 9, leased: false, ...l });

/** A destination host: its files by path, its /proc/locks text, and what a probe of a path finds. */
function view(opts: { files?: Record<string, FileId>; procLocks?: string; probe?: Record<string, ProbedLock> }): LockView & { probed: string[] } {
  const probed: string[] = [];
  return {
    probed,
    stat: (p) => opts.files?.[p] ?? null,
    procLocks: () => parseProcLocks(opts.procLocks ?? ''),
    probe(p) {
      probed.push(p);
      return opts.probe?.[p] ?? null;
    },
  };
}
const file = (ino: bigint, plain = true): FileId => ({ dev: '8:1', ino, plain });
const verdict = (l: HeldLock, v: LockView, all: HeldLock[] = [l]) => seenLock(l, all, v, v.procLocks());

describe("the destination's verdict on a lock of the tree", () => {
  it('one kernel, shared file system: its /proc/locks lists the same lock, seen without opening the file', () => {
    const v = view({ files: { '/data/f': file(1001n) }, procLocks: PROC_LOCKS });
    const s = verdict(lock({}), v);
    expect(s).toMatchObject({ same: true });
    expect(s!.how).toContain('/proc/locks: POSIX WRITE on bytes 0-9, pid 4242');
    expect(v.probed).toEqual([]);
    expect(verdict(lock({ kind: 'flock', start: 0, end: null, path: '/data/g' }), view({ files: { '/data/g': { dev: '0:1a5', ino: 1003n, plain: true } }, procLocks: PROC_LOCKS }))).toMatchObject({
      same: true,
    });
  });

  it('local storage: another file under the same path, nothing held there, nothing seen (the lock is carried)', () => {
    const v = view({ files: { '/data/f': file(9999n) }, procLocks: PROC_LOCKS });
    expect(verdict(lock({}), v)).toBeNull();
    expect(v.probed).toEqual(['/data/f']);
    expect(verdict(lock({}), view({ procLocks: PROC_LOCKS }))).toBeNull(); // no such file there
  });

  it('NFS: the probe through its own open sees the lock the server holds for the source', () => {
    const v = view({ files: { '/data/f': file(5n) }, probe: { '/data/f': { write: true, start: 0, end: 9, pid: 0 } } });
    const s = verdict(lock({}), v);
    expect(s).toMatchObject({ same: true });
    expect(s!.how).toBe('F_OFD_GETLK on its own open of the file: WRITE on bytes 0-9, held through the file server');
  });

  it("shared locks travel even when seen (taken again beside the source's, no window); a write on either side is refused", () => {
    const f = { files: { '/data/f': file(5n) } };
    const rd = lock({ write: false, start: 20, end: 29 });
    // The source's own read lock, through NFS or in /proc/locks: carried.
    expect(verdict(rd, view({ ...f, probe: { '/data/f': { write: false, start: 20, end: 29, pid: 0 } } }))).toBeNull();
    expect(verdict(rd, view({ files: { '/data/f': file(1002n) }, procLocks: PROC_LOCKS }))).toBeNull();
    expect(verdict(lock({ kind: 'ofd', write: false, start: 20, end: 29 }), view({ files: { '/data/f': file(1002n) }, procLocks: PROC_LOCKS }))).toBeNull();
    expect(verdict(rd, view({ ...f, probe: { '/data/f': { write: true, start: 25, end: 40, pid: 77 } } }))).toMatchObject({ same: false });
    expect(verdict(lock({}), view({ ...f, probe: { '/data/f': { write: false, start: 5, end: 5, pid: 77 } } }))).toMatchObject({ same: false });
    expect(verdict(lock({ write: false, start: 0, end: 9 }), view({ files: { '/data/f': file(1001n) }, procLocks: PROC_LOCKS }))).toMatchObject({ same: false });
  });

  it('probes for what conflicts: any lock for a write lock, only a write lock for a read lock', () => {
    const asked: boolean[] = [];
    const v: LockView = { stat: () => file(5n), procLocks: () => [], probe: (_p, _s, _e, write) => (asked.push(write), null) };
    seenLock(lock({}), [], v, []);
    seenLock(lock({ write: false }), [], v, []);
    seenLock(lock({ kind: 'flock', write: false, start: 0, end: null }), [], v, []);
    expect(asked).toEqual([true, false, false]);
  });

  it('POSIX and OFD locks meet in one list: a POSIX lock there conflicts with an OFD write lock', () => {
    const v = view({ files: { '/data/f': file(1002n) }, procLocks: '1: POSIX  ADVISORY  READ  88 08:01:1002 8 8\n' });
    expect(verdict(lock({ kind: 'ofd' }), v)).toMatchObject({ same: false });
  });

  it('flock is probed as the whole-file lock NFS makes of it; a byte range there is not it', () => {
    const fl = lock({ kind: 'flock', start: 0, end: null });
    const f = { files: { '/data/f': file(5n) } };
    expect(verdict(fl, view({ ...f, probe: { '/data/f': { write: true, start: 0, end: null, pid: 0 } } }))).toMatchObject({ same: true });
    expect(verdict(fl, view({ ...f, probe: { '/data/f': { write: true, start: 0, end: 9, pid: 0 } } }))).toBeNull();
  });

  it('never opens a leased file: leases only through /proc/locks, and no probe where any side sees a lease or delegation', () => {
    const lease = lock({ kind: 'lease', write: true, start: 0, end: null, path: '/data/l' });
    const seen = view({ files: { '/data/l': file(1007n) }, procLocks: `${PROC_LOCKS}7: LEASE  ACTIVE    WRITE 4242 08:01:1007 0 EOF\n` });
    expect(verdict(lease, seen)).toMatchObject({ same: true });
    // A read lease beside the source's: carried; beside a write lease: refused.
    expect(verdict({ ...lease, write: false }, view({ files: { '/data/l': file(1004n) }, procLocks: PROC_LOCKS }))).toBeNull();
    expect(verdict({ ...lease, write: false }, seen)).toMatchObject({ same: false });
    const unseen = view({ files: { '/data/l': file(7n) } });
    expect(verdict(lease, unseen)).toBeNull();
    expect(unseen.probed).toEqual([]);

    const posixOn = (path: string, ino: bigint, extra: Partial<HeldLock> = {}) => {
      const v = view({ files: { [path]: file(ino) }, procLocks: PROC_LOCKS, probe: { [path]: { write: true, start: 0, end: 9, pid: 0 } } });
      return { s: verdict(lock({ path, ...extra }), v), v };
    };
    // The source host sees a lease on the file.
    const a = posixOn('/data/a', 50n, { leased: true });
    expect(a.s).toBeNull();
    expect(a.v.probed).toEqual([]);
    // The destination sees a lease (another tenant) or a delegation of its NFS server on it.
    for (const ino of [1005n, 1006n]) {
      const b = posixOn('/data/b', ino);
      expect(b.s).toBeNull();
      expect(b.v.probed).toEqual([]);
    }
    // The tree itself holds a lease on the file through another fd.
    const v = view({ files: { '/data/c': file(51n) }, probe: { '/data/c': { write: true, start: 0, end: 9, pid: 0 } } });
    const c = lock({ path: '/data/c' });
    expect(seenLock(c, [c, lock({ path: '/data/c', fd: 4, kind: 'lease', start: 0, end: null })], v, [])).toBeNull();
    expect(v.probed).toEqual([]);
  });

  it('opens only regular files and directories', () => {
    const v = view({ files: { '/dev/ttyS0': file(60n, false) }, probe: { '/dev/ttyS0': { write: true, start: 0, end: 9, pid: 0 } } });
    expect(verdict(lock({ path: '/dev/ttyS0' }), v)).toBeNull();
    expect(v.probed).toEqual([]);
  });
});

describe('the refusal', () => {
  it('names the process, fd, file, lock and reason, says what to do, and is not retryable', () => {
    const locks = [lock({ fd: 5, kind: 'ofd', start: 5, end: 11 }), lock({ fd: 6, path: '/data/other', kind: 'flock', start: 0, end: null })];
    const v = view({ files: { '/data/f': file(1n), '/data/other': file(2n) }, procLocks: '1: OFDLCK ADVISORY  WRITE -1 08:01:1 5 11\n2: FLOCK  ADVISORY  WRITE 4242 08:01:2 0 EOF\n' });
    let err: unknown;
    try {
      refuseSharedLocks(locks, { source: 'h1', destination: 'h2' }, v);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FerryError);
    const e = err as FerryError;
    expect(e.code).toBe(ErrorCode.Unsupported);
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/^pid 4242 \(db\) fd 5 \(\/data\/f\): its OFD write lock on bytes 5-11 cannot be carried to h2: h2 sees it held \(\/proc\/locks: OFDLCK WRITE on bytes 5-11, pid -1\), so the file is on storage h2 shares with h1\./);
    expect(e.message).toContain('another process (one waiting for it, say) could take it');
    expect(e.message).toContain('Release the lock before migrating, migrate to a host that does not share this file system, or stop the workload and start it on h2.');
    expect(e.details).toMatchObject({ pid: 4242, comm: 'db', where: 'fd 5', path: '/data/f', lock: { kind: 'ofd', write: true, start: 5, end: 11 } });
    expect((e.details!['problems'] as unknown[]).length).toBe(2);
  });

  it('a tree without locks, or whose locks the destination does not see, passes', () => {
    const never: LockView = {
      stat: () => {
        throw new Error('looked');
      },
      procLocks: () => {
        throw new Error('looked');
      },
      probe: () => null,
    };
    expect(() => refuseSharedLocks([], { source: 'h1', destination: 'h2' }, never)).not.toThrow();
    expect(() => refuseSharedLocks([lock({})], { source: 'h1', destination: 'h2' }, view({ files: { '/data/f': file(3n) } }))).not.toThrow();
  });

  it('the wire: a source or coordinator that sends no locks means none', () => {
    const step = { migrationId: 'm-abcd1234', idempotencyKey: 'k', attempt: 1, workload: 'w', peer: 'h1' };
    expect(AdmitRequest.parse({ ...step, limits: {}, requests: {} }).locks).toEqual([]);
    expect(PreflightReply.parse({ workloadBytes: 1, processes: 1, threads: 1 }).locks).toEqual([]);
    expect(() => AdmitRequest.parse({ ...step, limits: {}, requests: {}, locks: [{ ...lock({}), extra: 1 }] })).toThrow();
  });
});

describe('a lock restore cannot take again', () => {
  it('says which lock, why, and is not retried', () => {
    const e = lockNotTaken(31, { fd: 3, path: '/data/f' }, { kind: 'posix', write: true, start: 0, end: 9 }, new SyscallError('injected fcntl', 11));
    expect(e.code).toBe(ErrorCode.Conflict);
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/^pid 31 fd 3 \(\/data\/f\): cannot take its POSIX write lock on bytes 0-9 again: (EAGAIN|EWOULDBLOCK): another process holds a conflicting lock on the file/);
    const lease = lockNotTaken(31, { fd: 4, path: '/data/l' }, { kind: 'lease', write: true, start: 0, end: null }, new SyscallError('injected fcntl', 11));
    expect(lease.message).toContain('the file is open elsewhere (for writing, or at all for a write lease)');
  });
});

describe('restore and leases', () => {
  const guard = (procLocks: string) => new LeaseGuard({ procLocks: () => parseProcLocks(procLocks), stat: (p) => ({ '/l/r': file(1004n), '/l/w': file(1007n), '/l/x': file(1n) })[p] ?? null });
  const W = '1: LEASE  ACTIVE    WRITE 4242 08:01:1007 0 EOF\n';

  it('refuses an open that would break a lease here: any open for a write lease, a writing one for a read lease', () => {
    const g = guard(PROC_LOCKS + W);
    expect(() => g.check(9, 'fd 3', '/l/r', 0)).not.toThrow(); // O_RDONLY beside a read lease
    expect(() => g.check(9, 'fd 3', '/l/r', 2)).toThrow(/^pid 9 fd 3 \(\/l\/r\): opening the file here would break the read lease pid 4242 holds on it/);
    expect(() => g.check(9, 'fd 4', '/l/w', 0)).toThrow(/would break the write lease pid 4242/);
    expect(() => g.check(9, 'fd 5', '/l/x', 2)).not.toThrow(); // a file without one
    expect(() => g.check(9, 'fd 6', '/l/gone', 2)).not.toThrow(); // not here: the open says so
    try {
      g.check(9, 'fd 4', '/l/w', 0);
    } catch (e) {
      expect((e as FerryError).code).toBe(ErrorCode.Conflict);
      expect((e as FerryError).retryable).toBe(false);
    }
  });

  it('looks at no file when the host has no lease at all', () => {
    const g = new LeaseGuard({
      procLocks: () => parseProcLocks('1: POSIX  ADVISORY  WRITE 4242 08:01:1001 0 9\n'),
      stat: () => {
        throw new Error('looked');
      },
    });
    expect(() => g.check(9, 'fd 3', '/l/w', 2)).not.toThrow();
  });

  it('flock is taken without blocking: a holder elsewhere fails the restore instead of hanging it', () => {
    expect(lockCall(3, { kind: 'flock', write: true, start: 0, end: null }, () => 0n)).toEqual(['flock', [3, 2 | 4]]);
    expect(lockCall(3, { kind: 'flock', write: false, start: 0, end: null }, () => 0n)).toEqual(['flock', [3, 1 | 4]]);
  });
});
