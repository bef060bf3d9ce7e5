// Resource limits through the real CLI, coordinator and agents in a real lab, on this machine's
// real cgroups (v1 hierarchies here): a workload with memory, CPU and pids limits moves to
// another host and back with its limits identical after each move, and the limits still act (the
// workload itself sees fork fail at pids.max and an allocation past memory.max killed, and its
// CPU quota throttles it); a destination whose CPU requests are taken refuses in preflight while
// the workload keeps running; `ferry update` changes a limit live; throttling during pre-copy
// leaves the workload's own CPU limit in place.
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { hostLayout, placementOf } from '../../agent/cgroups/layout.ts';
import { WorkloadCgroup } from '../../agent/cgroups/workload-cgroup.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { ResourceLimits } from '../../shared/resources.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { buildTool, buildWorkload } from '../workloads/harness.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { labEnv, useLab } from './helpers/lab.ts';

const env = labEnv('itlimits');
const MiB = 1024 * 1024;

interface Probe {
  name: string;
  dir: string;
  seq: number;
}
interface ProbeStatus {
  pid: number;
  progress: number;
  done: number;
  forked: number;
  forkErrno: number;
  alloc: string;
}

const statusOf = (p: Probe): ProbeStatus | null => {
  try {
    return JSON.parse(readFileSync(path.join(p.dir, 'status.json'), 'utf8')) as ProbeStatus;
  } catch {
    return null;
  }
};

async function until<T>(what: string, get: () => T | null | undefined | Promise<T | null | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

async function runProbe(name: string, host: string, flags: string[]): Promise<Probe> {
  const bin = await buildTool('limits-probe');
  const dir = mkdtempSync(path.join(tmpdir(), `ferry-limits-${name}-`));
  await ferryJson<WorkloadInfo>(['run', '--host', host, '--name', name, '--cwd', dir, ...flags, '--', bin, path.join(dir, 'status.json')], env);
  const p = { name, dir, seq: 0 };
  await until(`${name} reports`, () => statusOf(p));
  return p;
}

/** Asks the probe to do something and waits for its own report of it. */
async function command(p: Probe, what: 'fork' | 'alloc', arg: number): Promise<ProbeStatus> {
  const seq = ++p.seq;
  writeFileSync(path.join(p.dir, 'cmd.tmp'), `${seq} ${what} ${arg}\n`);
  renameSync(path.join(p.dir, 'cmd.tmp'), path.join(p.dir, 'cmd'));
  return until(`${p.name} did "${what} ${arg}"`, () => {
    const st = statusOf(p);
    return st && st.done >= seq ? st : null;
  });
}

/** The probe's progress counter moves on. */
async function progresses(p: Probe): Promise<void> {
  const before = statusOf(p)!.progress;
  await until(`${p.name} makes progress`, () => statusOf(p)!.progress > before);
}

const workload = async (name: string): Promise<WorkloadInfo> => (await ferryJson<WorkloadInfo[]>(['ps'], env)).find((w) => w.name === name)!;

/** What the kernel enforces for the workload on `host`, read from its cgroup files. */
const kernelLimits = (host: string, name: string): ResourceLimits => new WorkloadCgroup(hostLayout(), path.join('ferry-lab', env.FERRY_LAB, host, name)).read();

async function migrate(name: string, to: string, extra: string[] = []): Promise<MigrationView> {
  const r = await ferry(['migrate', name, '--to', to, '--json', ...extra], env);
  const v = JSON.parse(r.stdout) as MigrationView;
  expect(v.outcome, `${name} -> ${to}: ${v.error?.message ?? ''}`).toBe('completed');
  return v;
}

/** The workload runs on `host` with exactly `limits`, in its record and in the kernel. */
async function expectLimits(name: string, host: string, limits: ResourceLimits): Promise<WorkloadInfo> {
  const w = await workload(name);
  expect([w.host, w.state]).toEqual([host, 'running']);
  expect(w.limits).toEqual(limits);
  expect(kernelLimits(host, name)).toEqual(limits);
  return w;
}

/** Fork fails at pids.max, an allocation past memory.max is killed while one below it is not, the CPU quota throttles. */
async function expectLimitsAct(p: Probe, host: string, pidsMax: number): Promise<void> {
  const f = await command(p, 'fork', pidsMax + 10);
  // The probe itself is one task of the group; the container's shim stays outside on every host.
  expect([f.forked, f.forkErrno]).toEqual([pidsMax - 1, 11 /* EAGAIN */]);
  expect((await command(p, 'alloc', 160)).alloc).toBe('signal:9');
  expect((await command(p, 'alloc', 8)).alloc).toBe('exit:0');
  const cg = new WorkloadCgroup(hostLayout(), path.join('ferry-lab', env.FERRY_LAB, host, p.name));
  const t0 = cg.usage().cpuThrottled ?? 0;
  await until(`${p.name} is throttled by its CPU quota`, () => (cg.usage().cpuThrottled ?? 0) > t0);
  await progresses(p);
}

describe('resource limits', () => {
  useLab(env);
  const limits: ResourceLimits = { memoryMax: 64 * MiB, swapMax: 0, cpus: 0.2, pidsMax: 8 };

  it('a workload with memory, cpu and pids limits moves to another host and back; its limits are identical and still act after each move', async () => {
    expect(placementOf(hostLayout(), 'memory')).not.toBeNull();
    const p = await runProbe('lim', 'h1', ['--memory', '64M', '--swap', '0', '--cpus', '0.2', '--pids', '8', '--requests', 'memory=64M,cpu=0.2']);
    const w = await expectLimits('lim', 'h1', limits);
    expect(w.requests).toEqual({ memoryBytes: 64 * MiB, cpus: 0.2 });
    await expectLimitsAct(p, 'h1', 8);
    await migrate('lim', 'h2');
    expect((await expectLimits('lim', 'h2', limits)).requests).toEqual({ memoryBytes: 64 * MiB, cpus: 0.2 });
    await expectLimitsAct(p, 'h2', 8);
    await migrate('lim', 'h1', ['--stop-and-copy']);
    await expectLimits('lim', 'h1', limits);
    await expectLimitsAct(p, 'h1', 8);
    // ps shows the limits and the usage against them.
    const ps = await ferry(['ps'], env);
    expect(ps.stdout).toMatch(/lim\s+h1\s+running.*mem [\d.]+ [KM]iB\/64\.0 MiB.*cpus 0\.2.*pids 1\/8/);
    expect(ps.stdout).toMatch(/throttled \d+\/\d+/);
  }, 600_000);

  it('ferry update changes a limit live, and the workload sees it', async () => {
    const p = { name: 'lim', dir: path.dirname(readFileSync(`/proc/${(await workload('lim')).rootPid}/cmdline`, 'utf8').split('\0')[1]!), seq: 100 };
    const r = await ferry(['update', 'lim', '--pids', '5', '--cpus', '0.3', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    await expectLimits('lim', 'h1', { ...limits, pidsMax: 5, cpus: 0.3 });
    expect((await command(p, 'fork', 20)).forked).toBe(4);
    // Without a limit to change it is an invalid request; an unknown workload is not found.
    expect((await ferry(['update', 'lim'], env)).code).toBe(2);
    expect((await ferry(['update', 'nosuch', '--pids', '9'], env)).code).toBe(2);
  }, 300_000);

  it('a destination whose CPU requests are taken refuses in preflight, and nothing is frozen', async () => {
    const hog = await runProbe('hog', 'h2', ['--requests', 'cpu=1.9']);
    const p = { name: 'lim', dir: path.dirname(readFileSync(`/proc/${(await workload('lim')).rootPid}/cmdline`, 'utf8').split('\0')[1]!), seq: 200 };
    const r = await ferry(['migrate', 'lim', '--to', 'h2', '--json'], env);
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(r.code).toBe(3);
    expect(v.error).toMatchObject({ phase: 'preflight', code: 'FERRY_INCOMPATIBLE' });
    expect(v.error!.message).toMatch(/cpu request 0\.2 does not fit/);
    // Refused before any pre-copy round or freeze.
    expect(v.phases.map((x) => x.phase)).not.toContain('freeze');
    expect(v.rounds).toEqual([]);
    await progresses(p);
    await expectLimits('lim', 'h1', { ...limits, pidsMax: 5, cpus: 0.3 });
    // Nothing of it was left on h2.
    expect(() => readFileSync(path.join(hostLayout().v1Mounts.get('memory') ?? '/nonexistent', 'ferry-lab', env.FERRY_LAB, 'h2', 'lim', 'cgroup.procs'))).toThrow();
    await ferry(['stop', 'hog'], env);
    void hog;
  }, 300_000);

  it('throttling during pre-copy leaves the workload its own CPU limit', async () => {
    const bin = await buildWorkload('memwriter');
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-limits-racer-'));
    await ferryJson(['run', '--host', 'h1', '--name', 'racer', '--cwd', dir, '--cpus', '1.5', '--memory', '512M', '--', bin, path.join(dir, 'status.json'), '64', '3000', 'random'], env);
    await until('racer runs', () => (JSON.parse(readFileSync(path.join(dir, 'status.json'), 'utf8')) as { phase?: string }).phase === 'running');
    // A link capped at 16 MB/s: the unpaced writer outruns it whatever CPU a busy machine leaves it.
    const v = await migrate('racer', 'h2', ['--downtime-budget', '1', '--max-rounds', '6', '--bandwidth', '16']);
    expect(v.rounds.some((r) => r.throttled === true), `rounds: ${JSON.stringify(v.rounds.map((r) => [r.pagesScanned, r.pagesDirty, r.dirtyRateBps, r.bandwidthBps, r.linkMeasured, r.throttled]))}; ${v.switchover}`).toBe(true);
    const w = await expectLimits('racer', 'h2', { cpus: 1.5, memoryMax: 512 * MiB });
    expect(readFileSync(`/proc/${w.rootPid}/cgroup`, 'utf8')).not.toContain('ferry-throttle');
    await ferry(['stop', 'racer'], env);
  }, 600_000);
});
