// The verification comparators on fake /proc readings: what matches passes, and each kind of
// difference is reported with the process, the resource, the field, expected and actual.
import { describe, expect, it } from 'vitest';
import type { Image, ProcessImage } from '../../shared/image-format.ts';
import { compareFds, epollEntries, kindOf } from '../../agent/engine/verify/fds.ts';
import { compareMappings } from '../../agent/engine/verify/mappings.ts';
import { differsOutside } from '../../agent/engine/verify/memory.ts';
import { keyValues, type ProcessReading } from '../../agent/engine/verify/reading.ts';
import { compareStatus, parseLimits } from '../../agent/engine/verify/status.ts';
import { verifyTree } from '../../agent/engine/verify/index.ts';
import type { MapEntry } from '../../agent/engine/process/procfs.ts';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max file size             unlimited            unlimited            bytes
Max data size             unlimited            unlimited            bytes
Max stack size            8388608              unlimited            bytes
Max core file size        0                    unlimited            bytes
Max resident set          unlimited            unlimited            bytes
Max processes             31517                31517                processes
Max open files            1024                 524288               files
`;

function proc(over: Partial<ProcessImage> = {}): ProcessImage {
  return {
    pid: 1,
    hostPid: 500,
    ppid: 0,
    pgid: 1,
    sid: 1,
    comm: 'prog',
    exe: '/usr/bin/prog',
    cwd: '/tmp',
    umask: 0o22,
    personality: 0,
    creds: { uids: [0, 0, 0, 0], gids: [0, 0, 0, 0], groups: [0], capInh: '0x0', capPrm: '0x1ff', capEff: '0x1ff', capBnd: '0x1ff', capAmb: '0x0', noNewPrivs: false },
    cgroup: '/',
    pendingShared: [],
    pdeathsig: 0,
    mm: { startCode: '0x0', endCode: '0x0', startData: '0x0', endData: '0x0', startBrk: '0x0', brk: '0x0', startStack: '0x0', argStart: '0x0', argEnd: '0x0', envStart: '0x0', envEnd: '0x0' },
    auxv: '',
    vmas: [
      { start: '0x400000', end: '0x402000', perms: 'r-xp', kind: 'file-private', path: '/usr/bin/prog', fileOffset: '0x0', runs: [] },
      { start: '0x402000', end: '0x403000', perms: 'rw-p', kind: 'file-private', path: '/usr/bin/prog', fileOffset: '0x2000', runs: [] },
      { start: '0x600000', end: '0x610000', perms: 'rw-p', kind: 'heap', fileOffset: '0x0', runs: [] },
      { start: '0x7f0000000000', end: '0x7f0000004000', perms: 'rw-p', kind: 'anon', fileOffset: '0x0', runs: [] },
    ],
    fds: [
      { fd: 0, kind: 'chr', path: '/dev/null', flags: 0, cloexec: false, pos: 0 },
      { fd: 3, kind: 'pipe', path: 'pipe:[77]', flags: 0o4000, cloexec: true, pos: 0, shared: 0, end: 0 },
      { fd: 4, kind: 'pipe', path: 'pipe:[77]', flags: 0o1, cloexec: false, pos: 0, shared: 0, end: 1 },
      { fd: 5, kind: 'file', path: '/tmp/data', flags: 0o2, cloexec: false, pos: 4096 },
      { fd: 6, kind: 'eventfd', path: 'anon_inode:[eventfd]', flags: 0o2, cloexec: false, pos: 0, eventfd: { count: '0x3', semaphore: false } },
      { fd: 7, kind: 'epoll', path: 'anon_inode:[eventpoll]', flags: 0o2, cloexec: true, pos: 0, epoll: [{ tfd: 6, events: 1, data: '0x6' }] },
    ],
    sigactions: [
      { sig: 2, handler: '0x1', flags: '0x0', restorer: '0x0', mask: '0x0' },
      { sig: 15, handler: '0x401000', flags: '0x4000000', restorer: '0x401100', mask: '0x0' },
    ],
    rlimits: [{ resource: 7, cur: '0x400', max: '0x80000' }],
    posixTimers: [],
    itimers: [],
    threads: [
      {
        tid: 1,
        comm: 'prog',
        regs: '',
        xstate: '',
        sigmask: '0x4000',
        rseq: null,
        robustList: { head: '0x0', len: 24 },
        tidAddress: '0x0',
        altstack: { sp: '0x0', flags: 2, size: '0x0' },
        pending: [{ sig: 10, siginfo: '' }],
      },
    ],
    pagesFile: 'pages-1.img',
    pagesBytes: 0,
    ...over,
  };
}

const map = (start: number, end: number, perms: string, path = '', offset = 0, inode = path ? 9 : 0): MapEntry => ({ start: BigInt(start), end: BigInt(end), perms, offset: BigInt(offset), dev: '00:00', inode, path });

function reading(over: Partial<ProcessReading> = {}): ProcessReading {
  const status = keyValues(
    [
      'Name:\tprog',
      'Umask:\t0022',
      'PPid:\t0',
      'Uid:\t0\t0\t0\t0',
      'Gid:\t0\t0\t0\t0',
      'Groups:\t0 ',
      'NSpid:\t500\t1',
      'NSpgid:\t500\t1',
      'NSsid:\t500\t1',
      'ShdPnd:\t0000000000000000',
      'SigIgn:\t0000000000000002',
      'SigCgt:\t0000000000004000',
      'CapInh:\t0000000000000000',
      'CapPrm:\t00000000000001ff',
      'CapEff:\t00000000000001ff',
      'CapBnd:\t00000000000001ff',
      'CapAmb:\t0000000000000000',
      'NoNewPrivs:\t0',
      'Seccomp:\t0',
    ].join('\n'),
  );
  const task = keyValues(['NSpid:\t500\t1', 'SigPnd:\t0000000000000200', 'SigBlk:\t0000000000004000'].join('\n'));
  return {
    hostPid: 500,
    status,
    tasks: [{ hostTid: 500, status: task, comm: 'prog' }],
    personality: '00000000',
    limits: LIMITS,
    cwd: '/tmp',
    root: '/',
    exe: '/usr/bin/prog',
    maps: [
      // The kernel merged nothing here but split the anonymous range in two: still the same memory.
      map(0x400000, 0x402000, 'r-xp', '/usr/bin/prog', 0),
      map(0x402000, 0x403000, 'rw-p', '/usr/bin/prog', 0x2000),
      map(0x600000, 0x610000, 'rw-p', '[heap]'),
      map(0x7f0000000000, 0x7f0000002000, 'rw-p'),
      map(0x7f0000002000, 0x7f0000004000, 'rw-p'),
    ],
    fds: new Map([
      [0, { target: '/dev/null', fdinfo: 'pos:\t0\nflags:\t00\nmnt_id:\t1\n' }],
      [3, { target: 'pipe:[91]', fdinfo: 'pos:\t0\nflags:\t02004000\n' }],
      [4, { target: 'pipe:[91]', fdinfo: 'pos:\t0\nflags:\t01\n' }],
      [5, { target: '/tmp/data', fdinfo: 'pos:\t4096\nflags:\t02\n' }],
      [6, { target: 'anon_inode:[eventfd]', fdinfo: 'pos:\t0\nflags:\t02\neventfd-count:                3\n' }],
      [7, { target: 'anon_inode:[eventpoll]', fdinfo: 'pos:\t0\nflags:\t02000002\ntfd:        6 events:        1 data:                6  pos:0 ino:1 sdev:f\n' }],
    ]),
    ...over,
  };
}

describe('status comparator', () => {
  it('passes a process that matches its image', () => {
    expect(compareStatus(proc(), reading(), null).mismatches).toEqual([]);
  });

  it('names each differing field with expected and actual', () => {
    const r = reading();
    r.status.set('SigIgn', '0000000000000006'); // SIGQUIT came back ignored
    r.status.set('NoNewPrivs', '1');
    r.tasks[0]!.status.set('SigBlk', '0000000000000000');
    const m = compareStatus(proc(), r, null).mismatches;
    expect(m).toEqual([
      { pid: 1, hostPid: 500, resource: 'status', field: 'SigIgn', expected: '0x2', actual: '0x6' },
      { pid: 1, hostPid: 500, resource: 'status', field: 'NoNewPrivs', expected: '0', actual: '1' },
      { pid: 1, hostPid: 500, resource: 'status', field: 'thread 1 SigBlk', expected: '0x4000', actual: '0x0' },
    ]);
  });

  it('reads rlimits in resource order, unlimited as all ones', () => {
    const l = parseLimits(LIMITS);
    expect(l[0]).toEqual([(1n << 64n) - 1n, (1n << 64n) - 1n]);
    expect(l[7]).toEqual([1024n, 524288n]);
    const m = compareStatus(proc({ rlimits: [{ resource: 7, cur: '0x800', max: '0x80000' }] }), reading(), null).mismatches;
    expect(m).toMatchObject([{ field: 'rlimit 7 soft', expected: '0x800', actual: '0x400' }]);
  });

  it('checks the parent through its host pid', () => {
    const r = reading();
    r.status.set('PPid', '41');
    expect(compareStatus(proc(), r, 42).mismatches).toMatchObject([{ field: 'ppid', expected: '42', actual: '41' }]);
  });
});

describe('mappings comparator', () => {
  const p = proc();
  it('ignores VMA splits and merges', () => {
    expect(compareMappings(p.vmas, reading(), { pid: 1, hostPid: 500 }).mismatches).toEqual([]);
  });

  it('reports protection, sharing, backing and missing ranges', () => {
    const maps = [
      map(0x400000, 0x402000, 'r--p', '/usr/bin/prog', 0), // lost exec
      map(0x402000, 0x403000, 'rw-s', '/usr/bin/prog', 0x2000), // shared instead of private
      map(0x600000, 0x610000, 'rw-p', '/usr/bin/other', 0), // another file
      map(0x7f0000000000, 0x7f0000002000, 'rw-p'), // the second half is gone
    ];
    const m = compareMappings(p.vmas, reading({ maps }), { pid: 1, hostPid: 500 }).mismatches;
    expect(m.map((x) => [x.field, x.expected, x.actual])).toEqual([
      ['mapping 0x400000-0x402000 perms', 'r-xp', 'r--p'],
      ['mapping 0x402000-0x403000 flags (shared/private)', 'rw-p', 'rw-s'],
      ['mapping 0x600000-0x610000 backing', 'heap', 'file /usr/bin/other at start-0x600000'],
      ['mapping 0x7f0000002000-0x7f0000004000 range', 'rw-p anon', 'unmapped'],
    ]);
  });

  it('finds a file mapped at the wrong offset', () => {
    const r = reading();
    r.maps[1] = map(0x402000, 0x403000, 'rw-p', '/usr/bin/prog', 0x1000);
    expect(compareMappings(p.vmas, r, { pid: 1, hostPid: 500 }).mismatches).toMatchObject([{ field: 'mapping 0x402000-0x403000 backing' }]);
  });
});

describe('fds comparator', () => {
  const img = { processes: [proc()], shared: [] } as unknown as Image;
  it('passes a table that matches, whatever the objects are numbered here', () => {
    expect(compareFds(img, [reading()]).mismatches).toEqual([]);
  });

  it('reports flags, close-on-exec, offsets, counters, epoll sets, extra and missing fds', () => {
    const r = reading();
    r.fds.set(3, { target: 'pipe:[91]', fdinfo: 'pos:\t0\nflags:\t00\n' }); // lost O_NONBLOCK and O_CLOEXEC
    r.fds.set(5, { target: '/tmp/data', fdinfo: 'pos:\t0\nflags:\t02\n' });
    r.fds.set(6, { target: 'anon_inode:[eventfd]', fdinfo: 'pos:\t0\nflags:\t02\neventfd-count:                0\n' });
    r.fds.set(7, { target: 'anon_inode:[eventpoll]', fdinfo: 'pos:\t0\nflags:\t02000002\n' });
    r.fds.delete(4);
    r.fds.set(9, { target: '/etc/passwd', fdinfo: 'pos:\t0\nflags:\t0\n' });
    const m = compareFds(img, [r]).mismatches;
    expect(m.map((x) => [x.field, x.expected, x.actual])).toEqual([
      ['fd 9', 'closed', '/etc/passwd'],
      ['fd 3 flags', '04000', '00'],
      ['fd 3 close-on-exec', 'true', 'false'],
      ['fd 4', 'pipe pipe:[77]', 'closed'],
      ['fd 5 offset', '4096', '0'],
      ['fd 6 eventfd count', '0x3', '0x0'],
      ['fd 7 epoll registrations', '6 1 6', ''],
    ]);
  });

  it('finds two ends of one pipe that came back as different pipes', () => {
    const r = reading();
    r.fds.set(4, { target: 'pipe:[92]', fdinfo: 'pos:\t0\nflags:\t01\n' });
    const img2 = { processes: [proc({ fds: proc().fds.map((f) => (f.fd === 4 ? { ...f, end: 0 } : f)) })], shared: [] } as unknown as Image;
    expect(compareFds(img2, [r]).mismatches).toMatchObject([{ field: 'fd 4 same object as pid 1 fd 3', expected: 'pipe:[91]', actual: 'pipe:[92]' }]);
  });

  it('knows kinds from their /proc links', () => {
    expect(['pipe:[1]', 'socket:[2]', 'anon_inode:[eventfd]', 'anon_inode:[timerfd]', 'anon_inode:[eventpoll]', 'anon_inode:[signalfd]', '/memfd:x (deleted)', '/etc/hosts'].map(kindOf)).toEqual([
      'pipe',
      'socket',
      'eventfd',
      'timerfd',
      'epoll',
      'signalfd',
      'memfd',
      'path',
    ]);
    expect(epollEntries('tfd:        5 events:       19 data:               ab  pos:0\ntfd: 6 events: 1 data: 0\n')).toEqual(['5 19 ab', '6 1 0']);
  });
});

describe('memory', () => {
  it('leaves the kernel-owned rseq area out of a byte comparison', () => {
    const want = Buffer.alloc(64);
    const got = Buffer.alloc(64);
    got[36] = 7; // cpu_id of an rseq area at base+32
    expect(differsOutside(want, got, 0x1000n, [{ start: 0x1020n, end: 0x1040n }])).toBe(false);
    got[3] = 1;
    expect(differsOutside(want, got, 0x1000n, [{ start: 0x1020n, end: 0x1040n }])).toBe(true);
  });
});

describe('verifyTree', () => {
  it('turns the first difference into FERRY_VERIFY_MISMATCH naming pid, resource and field', () => {
    const img = { processes: [proc()], shared: [] } as unknown as Image;
    const r = reading();
    r.status.set('SigCgt', '0000000000000000');
    let err: unknown;
    try {
      verifyTree(img, [500], { read: () => r, imageMemory: false });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({
      code: 'FERRY_VERIFY_MISMATCH',
      message: 'verification failed: pid 1 (host pid 500) status SigCgt: expected 0x4000, found 0x0',
      details: { pid: 1, hostPid: 500, resource: 'status', field: 'SigCgt', expected: '0x4000', actual: '0x0' },
    });
  });

  it('reports what it compared, and landing checks split into outside and inside the downtime', () => {
    const img = { processes: [proc()], shared: [] } as unknown as Image;
    const rep = verifyTree(img, [500], { read: () => reading(), imageMemory: false, landing: [{ pages: 10, ms: 4 }, { pages: 2, ms: 1 }] });
    expect(rep.mismatches).toEqual([]);
    expect(rep.pagesChecked).toEqual({ precopy: 10, downtime: 2 });
    expect(rep.outsideMs).toBe(4);
    expect(rep.insideMs).toBeGreaterThanOrEqual(1);
    expect(Object.keys(rep.checked)).toEqual(['status', 'mappings', 'fds', 'memory']);
    expect(rep.notVerified.length).toBeGreaterThan(0);
  });
});
