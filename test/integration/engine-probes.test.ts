import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LeaseGuard, heldLocks, hostLockView, refuseSharedLocks, seenLock } from '../../agent/engine/files/lock-sharing.ts';
import { O, closeFd, openFile, sys } from '../../agent/ffi/syscalls.ts';
import { probeKernel } from '../../agent/engine/probes.ts';

describe('probeKernel', () => {
  // What it costs is a benchmark's business (a timed assertion fails under load), not this test's.
  it('measures this kernel', async () => {
    const p = await probeKernel();
    expect(p.ptrace).toBe(true);
    expect(p.xsave).not.toBeNull();
    // XCR0 must contain x87|SSE (bits 0,1) and the size must cover the legacy area + header.
    expect(BigInt(p.xsave!.xcr0) & 3n).toBe(3n);
    expect(p.xsave!.xstateSize).toBeGreaterThanOrEqual(576);
    // Cross-check: AVX in /proc/cpuinfo means the kernel enabled YMM state (bit 2).
    if (/\bavx\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))) expect(BigInt(p.xsave!.xcr0) & 4n).toBe(4n);
    expect(p.timeNamespaces).toBe(true);
    expect(typeof p.uffdWpAsync).toBe('boolean');
    expect(p.clone3SetTid).toBe(true);
    const vdsoSealed = /\[vdso\]\n(?:.*\n)*?VmFlags:.*\bsl\b/.test(readFileSync('/proc/self/smaps', 'utf8'));
    expect(p.sealedSystemMappings).toBe(vdsoSealed);
  });
});

describe('the lock check of a migration, on this host', () => {
  it('sees an OFD lock, a flock and a lease held here (/proc/locks, F_OFD_GETLK), refuses the exclusive ones, and takes or breaks none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-lockview-'));
    const fds: number[] = [];
    const open = (p: string, flags: number) => {
      fds.push(openFile(p, flags | O.CLOEXEC, 0o600));
      return fds[fds.length - 1]!;
    };
    const ofd = (fd: number, type: number, start: number, len: number) => {
      const fl = Buffer.alloc(32);
      fl.writeInt16LE(type, 0);
      fl.writeBigInt64LE(BigInt(start), 8);
      fl.writeBigInt64LE(BigInt(len), 16);
      return sys('fcntl', fd, 37, fl); // F_OFD_SETLK
    };
    try {
      const locked = join(dir, 'locked');
      const a = open(locked, O.RDWR | O.CREAT);
      ofd(a, 1, 0, 10); // write lock on bytes 0-9, owned by this description
      const flocked = join(dir, 'flocked');
      sys('flock', open(flocked, O.RDWR | O.CREAT), 2 | 4);
      const leased = join(dir, 'leased');
      closeFd(openFile(leased, O.RDWR | O.CREAT | O.CLOEXEC, 0o600)); // a read lease wants no writer
      const l = open(leased, O.RDONLY);
      sys('fcntl', l, 1024, 0); // F_SETLEASE F_RDLCK

      const held = heldLocks([process.pid]).filter((h) => h.path.startsWith(dir));
      expect(held.map((h) => [h.path, h.kind, h.write, h.start, h.end, h.leased])).toEqual([
        [locked, 'ofd', true, 0, 9, false],
        [flocked, 'flock', true, 0, null, false],
        [leased, 'lease', false, 0, null, true],
      ]);
      const view = hostLockView();
      expect(view.probe(locked, 0, 9, true)).toEqual({ write: true, start: 0, end: 9, pid: -1 });
      expect(view.probe(locked, 0, 9, false)).toEqual({ write: true, start: 0, end: 9, pid: -1 });
      expect(view.probe(locked, 10, 20, true)).toBeNull();
      const procLocks = view.procLocks();
      // The write lock and the exclusive flock are seen; a read lease is taken again beside this one.
      expect(held.map((h) => seenLock(h, held, view, procLocks)?.same ?? null)).toEqual([true, true, null]);
      expect(() => refuseSharedLocks(held, { source: 'h1', destination: 'h2' })).toThrow(/^pid \d+ \(.*\) fd \d+ \(.*\/locked\): its OFD write lock on bytes 0-9 cannot be carried to h2: h2 sees it held/);
      expect(() => new LeaseGuard().check(process.pid, 'fd 9', leased, O.RDWR)).toThrow(/would break the read lease/);

      // Nothing was taken or broken: the lock is still this description's, the lease still held.
      const b = open(locked, O.RDWR);
      expect(() => ofd(b, 1, 0, 1)).toThrow(/EAGAIN|EWOULDBLOCK/);
      expect(sys('fcntl', l, 1025)).toBe(0); // F_GETLEASE: F_RDLCK
    } finally {
      for (const fd of fds.reverse()) closeFd(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
