// The cgroup interface against fake cgroup trees (temp dirs holding the files the kernel would
// make): v2 files where the unified hierarchy has a controller, v1 files otherwise, a readable
// refusal where neither has it; CLI spellings of limits; requests against a host's capacity;
// the migration throttle never lifting a workload's own quota.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requestsMisfit } from '../../agent/cgroups/admission.ts';
import { type CgroupLayout, type V1Name, controllerLayouts, v1MountsOf } from '../../agent/cgroups/layout.ts';
import { WorkloadCgroup, unenforceable } from '../../agent/cgroups/workload-cgroup.ts';
import { compareCgroup } from '../../agent/engine/verify/cgroup.ts';
import { applyThrottle, unthrottle } from '../../agent/migration/throttle.ts';
import { normalizeLimits, parseBytes, parseIoMax, parseRequests, type ResourceLimits } from '../../shared/resources.ts';

const MiB = 1024 * 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'ferry-cg-'));
  dirs.push(d);
  return d;
};

/** What the kernel puts into a new group, per hierarchy. */
const V2_FILES: Record<string, string> = {
  'cgroup.procs': '',
  'cgroup.subtree_control': '',
  'memory.max': 'max',
  'memory.high': 'max',
  'memory.swap.max': 'max',
  'memory.current': '12288',
  'memory.events': 'low 0\nhigh 0\nmax 2\noom 0\noom_kill 0',
  'cpu.max': 'max 100000',
  'cpu.weight': '100',
  'cpu.stat': 'usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 700',
  'pids.max': 'max',
  'pids.current': '2',
  'io.max': '',
  'io.stat': '8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0',
};
const V1_FILES: Record<V1Name, Record<string, string>> = {
  memory: {
    'memory.limit_in_bytes': '9223372036854771712',
    'memory.soft_limit_in_bytes': '9223372036854771712',
    'memory.memsw.limit_in_bytes': '9223372036854771712',
    'memory.usage_in_bytes': '8192',
    'memory.failcnt': '1',
  },
  cpu: { 'cpu.cfs_quota_us': '-1', 'cpu.cfs_period_us': '100000', 'cpu.shares': '1024', 'cpu.stat': 'nr_periods 4\nnr_throttled 1\nthrottled_time 100' },
  cpuacct: { 'cpuacct.usage': '7000000' },
  pids: { 'pids.max': 'max', 'pids.current': '3' },
  blkio: {
    'blkio.throttle.read_bps_device': '',
    'blkio.throttle.write_bps_device': '',
    'blkio.throttle.read_iops_device': '',
    'blkio.throttle.write_iops_device': '',
    'blkio.throttle.io_service_bytes_recursive': '8:0 Read 100\n8:0 Write 200\n8:0 Total 300\nTotal 300',
  },
};
const fill = (dir: string, files: Record<string, string>) => {
  mkdirSync(dir, { recursive: true });
  for (const [f, v] of Object.entries(files)) writeFileSync(path.join(dir, f), v);
};
const rd = (...p: string[]) => readFileSync(path.join(...p), 'utf8');

function v2Host(controllers = ['memory', 'cpu', 'pids', 'io']): { layout: CgroupLayout; root: string } {
  const root = tmp();
  fill(root, { 'cgroup.controllers': controllers.join(' '), 'cgroup.subtree_control': '' });
  fill(path.join(root, 'ferry'), { 'cgroup.subtree_control': '' });
  fill(path.join(root, 'ferry/h1'), { 'cgroup.subtree_control': '' });
  fill(path.join(root, 'ferry/h1/web'), V2_FILES);
  return { layout: { v2Root: root, v2Controllers: new Set(controllers), v1Mounts: new Map() }, root };
}

function hybridHost(): { layout: CgroupLayout; v2: string; v1: Record<V1Name, string> } {
  const v2 = tmp();
  fill(v2, { 'cgroup.controllers': 'hugetlb' });
  fill(path.join(v2, 'ferry/h1/web'), { 'cgroup.procs': '', 'cpu.stat': 'usage_usec 1' });
  const v1 = {} as Record<V1Name, string>;
  for (const n of Object.keys(V1_FILES) as V1Name[]) {
    v1[n] = tmp();
    fill(v1[n], { 'memory.memsw.limit_in_bytes': '9223372036854771712' });
    fill(path.join(v1[n], 'ferry/h1/web'), { ...V1_FILES[n], 'cgroup.procs': '' });
  }
  return { layout: { v2Root: v2, v2Controllers: new Set(['hugetlb']), v1Mounts: new Map(Object.entries(v1) as [V1Name, string][]) }, v2, v1 };
}

const all: ResourceLimits = { memoryMax: 64 * MiB, memoryHigh: 48 * MiB, swapMax: 16 * MiB, cpus: 0.5, cpuWeight: 200, pidsMax: 16, io: [{ device: '8:0', rbps: MiB, wbps: 2 * MiB }] };

describe('cgroup v2 (fake tree)', () => {
  it('writes every limit into its v2 file, enables the controllers down to the group, and reads them back', () => {
    const { layout, root } = v2Host();
    const cg = new WorkloadCgroup(layout, 'ferry/h1/web');
    cg.apply(all);
    const g = path.join(root, 'ferry/h1/web');
    expect([rd(g, 'memory.max'), rd(g, 'memory.high'), rd(g, 'memory.swap.max')]).toEqual([`${64 * MiB}`, `${48 * MiB}`, `${16 * MiB}`]);
    expect([rd(g, 'cpu.max'), rd(g, 'cpu.weight'), rd(g, 'pids.max')]).toEqual(['50000 100000', '200', '16']);
    expect(rd(g, 'io.max')).toBe(`8:0 rbps=${MiB} wbps=${2 * MiB} riops=max wiops=max`);
    for (const d of ['', 'ferry', 'ferry/h1']) expect(rd(root, d, 'cgroup.subtree_control')).toBe('+memory +cpu +pids +io');
    expect(rd(g, 'cgroup.subtree_control')).toBe('');
    expect(cg.read()).toEqual(all);
    expect(() => cg.verify(all, 'test')).not.toThrow();
    expect(() => cg.verify({ ...all, pidsMax: 17 }, 'test')).toThrow(/pidsMax: want 17, cgroup has 16/);
    expect(cg.dirs).toEqual([g]);
  });

  it('a limit given back to "none" returns to max; usage comes from the v2 statistics', () => {
    const { layout, root } = v2Host();
    const cg = new WorkloadCgroup(layout, 'ferry/h1/web');
    cg.apply(all);
    cg.apply({ pidsMax: 4 });
    const g = path.join(root, 'ferry/h1/web');
    expect([rd(g, 'memory.max'), rd(g, 'cpu.max'), rd(g, 'pids.max')]).toEqual(['max', 'max 100000', '4']);
    expect(cg.usage()).toEqual({ memoryBytes: 12288, memoryLimitHits: 2, cpuUsec: 5000, cpuThrottled: 3, cpuPeriods: 10, pids: 2, ioReadBytes: 4096, ioWriteBytes: 8192 });
  });

  it('refuses, readably and before writing anything, a limit whose controller the host lacks', () => {
    const { layout, root } = v2Host(['cpu']);
    expect(unenforceable(layout, { memoryMax: 64 * MiB, cpus: 1 })).toEqual([expect.stringMatching(/the memory controller is not available on this host/)]);
    const cg = new WorkloadCgroup(layout, 'ferry/h1/web');
    expect(() => cg.apply({ memoryMax: 64 * MiB, cpus: 1 })).toThrow(expect.objectContaining({ code: 'FERRY_UNSUPPORTED' }));
    expect(rd(root, 'ferry/h1/web/cpu.max')).toBe('max 100000');
    expect(controllerLayouts(layout)).toEqual({ memory: null, cpu: 'v2', pids: null, io: null });
  });
});

describe('cgroup v1 (fake hybrid host: v2 holds only hugetlb)', () => {
  it('writes every limit into its v1 file: swap counted with memory, weight as shares', () => {
    const { layout, v1 } = hybridHost();
    const cg = new WorkloadCgroup(layout, 'ferry/h1/web');
    expect(controllerLayouts(layout)).toEqual({ memory: 'v1', cpu: 'v1', pids: 'v1', io: 'v1' });
    cg.apply(all);
    const g = (n: V1Name) => path.join(v1[n], 'ferry/h1/web');
    expect([rd(g('memory'), 'memory.limit_in_bytes'), rd(g('memory'), 'memory.soft_limit_in_bytes'), rd(g('memory'), 'memory.memsw.limit_in_bytes')]).toEqual([
      `${64 * MiB}`,
      `${48 * MiB}`,
      `${80 * MiB}`,
    ]);
    expect([rd(g('cpu'), 'cpu.cfs_quota_us'), rd(g('cpu'), 'cpu.cfs_period_us'), rd(g('cpu'), 'cpu.shares')]).toEqual(['50000', '100000', '2048']);
    expect([rd(g('pids'), 'pids.max'), rd(g('blkio'), 'blkio.throttle.read_bps_device'), rd(g('blkio'), 'blkio.throttle.write_iops_device')]).toEqual(['16', `8:0 ${MiB}`, '8:0 0']);
    // The fake keeps the last write per file; a kernel drops a device's rule on 0.
    writeFileSync(path.join(g('blkio'), 'blkio.throttle.read_iops_device'), '');
    writeFileSync(path.join(g('blkio'), 'blkio.throttle.write_iops_device'), '');
    expect(cg.read()).toEqual(all);
    expect(cg.usage()).toEqual({ memoryBytes: 8192, memoryLimitHits: 1, cpuUsec: 7000, cpuThrottled: 1, cpuPeriods: 4, pids: 3, ioReadBytes: 100, ioWriteBytes: 200 });
    expect(cg.procsFiles()).toHaveLength(6);
  });

  it('a swap limit needs a memory limit in v1', () => {
    const { layout } = hybridHost();
    expect(() => new WorkloadCgroup(layout, 'ferry/h1/web').apply({ swapMax: 0 })).toThrow(/swap limit needs a memory limit/);
  });

  it('weights survive the trip through shares', () => {
    const { layout } = hybridHost();
    const cg = new WorkloadCgroup(layout, 'ferry/h1/web');
    for (const w of [1, 7, 99, 100, 101, 333, 5000, 10_000]) {
      cg.apply({ cpuWeight: w });
      expect(cg.read()).toEqual(w === 100 ? {} : { cpuWeight: w });
    }
  });

  it('finds v1 hierarchies in /proc/self/mounts, co-mounted ones too', () => {
    const m = v1MountsOf(
      ['cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0', 'cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0', 'cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0'].join('\n'),
    );
    expect(Object.fromEntries(m)).toEqual({ memory: '/sys/fs/cgroup/memory', cpu: '/sys/fs/cgroup/cpu,cpuacct', cpuacct: '/sys/fs/cgroup/cpu,cpuacct' });
  });
});

describe('limits on the command line and requests', () => {
  it('parses sizes, CPUs, I/O ceilings and requests', () => {
    expect([parseBytes('64M'), parseBytes('1.5G'), parseBytes('4097'), parseBytes('2Gi')]).toEqual([64 * MiB, 1.5 * 1024 * MiB, 4096, 2048 * MiB]);
    expect(() => parseBytes('lots')).toThrow(/not a size/);
    expect(() => parseBytes('100')).toThrow(/less than one page/);
    expect(parseIoMax('8:0:rbps=1M,wiops=100')).toEqual({ device: '8:0', rbps: MiB, wiops: 100 });
    expect(() => parseIoMax('sda:rbps=1M')).toThrow(/MAJOR:MINOR/);
    expect(parseRequests('memory=1G,cpu=0.5')).toEqual({ memoryBytes: 1024 * MiB, cpus: 0.5 });
    expect(() => parseRequests('gpu=1')).toThrow(/unknown resource/);
    expect(normalizeLimits({ cpus: 0.333333333, pidsMax: 3 })).toEqual({ cpus: 0.33333, pidsMax: 3 });
  });

  it('requests fit beside the host’s other requests, or say which does not', () => {
    const cap = { memoryBytes: 1024 * MiB, cpus: 2 };
    expect(requestsMisfit({ memoryBytes: 512 * MiB, cpus: 1 }, [{ memoryBytes: 512 * MiB, cpus: 1 }], cap)).toEqual([]);
    expect(requestsMisfit({ memoryBytes: 513 * MiB }, [{ memoryBytes: 512 * MiB }], cap)).toEqual([expect.stringMatching(/memory request .* does not fit/)]);
    expect(requestsMisfit({ cpus: 0.2 }, [{ cpus: 1.9 }], cap)).toEqual(['cpu request 0.2 does not fit: 1.9 of 2 CPUs are requested by other workloads']);
  });
});

describe('migration throttle', () => {
  it('never lifts the workload’s own cpu.max, and gives it back afterwards', () => {
    const { layout, root } = v2Host();
    const cg = new WorkloadCgroup(layout, 'ferry/h1/web');
    cg.apply({ cpus: 0.2 });
    const dir = path.join(root, 'ferry/h1/web');
    const rec = { kind: 'v2' as const, dir, previous: rd(dir, 'cpu.max'), cpus: 1 };
    applyThrottle(rec, []);
    expect(rd(dir, 'cpu.max')).toBe('20000 100000');
    applyThrottle({ ...rec, cpus: 0.05 }, []);
    expect(rd(dir, 'cpu.max')).toBe('5000 100000');
    unthrottle(rec);
    expect(cg.read()).toEqual({ cpus: 0.2 });
  });
});

describe('verification of the cgroup before the commit', () => {
  const procs = [
    { pid: 1, hostPid: 500 },
    { pid: 2, hostPid: 501 },
  ];
  it('names each limit that differs and each process outside the groups', () => {
    const c = compareCgroup({ limits: { memoryMax: 64 * MiB, pidsMax: 8 }, read: () => ({ memoryMax: 64 * MiB, pidsMax: 9 }), notMemberOf: (pid) => (pid === 501 ? ['/sys/fs/cgroup/pids/x'] : []) }, procs);
    expect(c.mismatches).toEqual([
      { pid: 1, hostPid: 500, resource: 'cgroup', field: 'limit pidsMax', expected: '8', actual: '9' },
      { pid: 2, hostPid: 501, resource: 'cgroup', field: 'member of /sys/fs/cgroup/pids/x', expected: 'yes', actual: 'no' },
    ]);
    expect([...c.checked.get('cgroup')!]).toEqual(['limits', 'membership']);
  });

  it('passes when the kernel enforces exactly the limits and every process is inside', () => {
    const c = compareCgroup({ limits: { cpus: 0.5 }, read: () => ({ cpus: 0.5 }), notMemberOf: () => [] }, procs);
    expect(c.mismatches).toEqual([]);
  });
});
