// Fleet scale: the real coordinator and a real nats-server (JetStream) against a simulated fleet
// (bench/fleet-agents.ts: many hosts per process, the real agent protocol, migration steps at
// realistic rates). For each fleet size: time to plan a drain and a rebalance (dry runs, at the
// caller), the coordinator's CPU and memory while heartbeats flow, NATS messages per second,
// heartbeats per second and whether the coordinator keeps every host alive, and how long a real
// drain of one 10-workload host takes. Prints a table and saves bench/results/fleet.json.
// Usage: node --import tsx bench/fleet.ts   (BENCH_FLEET_SIZES, default 50,200,500;
//        BENCH_FLEET_WINDOW_S, default 10: the steady-state window; BENCH_FLEET_REPEATS, default 5)
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { FleetJob } from '../shared/fleet.ts';
import { agentApi, coordinatorApi, type CoordinatorApi, type EndpointSpec } from '../shared/protocol.ts';
import { call } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';
import { hostName } from './fleet-sim.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const sizes = (process.env.BENCH_FLEET_SIZES ?? '50,200,500').split(',').map(Number).filter((n) => n >= 2);
const windowS = Number(process.env.BENCH_FLEET_WINDOW_S ?? 10);
const repeats = Number(process.env.BENCH_FLEET_REPEATS ?? 5);
const PER_HOST = 10;
const INTERVAL_MS = 1_000;
/**
 * nats-server's default max_payload is 1 MiB, and the deployed configs keep it; the coordinator's
 * whole-fleet replies (hosts, ps) outgrow it (see hostsReplyBytes, psReplyBytes). The bench's
 * server takes 8 MiB so that the coordinator's view can be watched at every size; the table flags
 * the replies that a default server would refuse.
 */
const BENCH_MAX_PAYLOAD = 8 * 1024 * 1024;
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

const progress = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);

/** Every process this bench started, so that an interrupted run ends them too. */
const started = new Set<ChildProcess>();

interface Row {
  hosts: number;
  workloads: number;
  agentProcesses: number;
  drainPlanMs: number;
  drainPlanMsAll: number[];
  drainPlanMoves: number;
  rebalancePlanMs: number;
  rebalancePlanMsAll: number[];
  rebalancePlanMoves: number;
  rebalanceImbalance: { before: number; after: number } | null;
  coordinatorCpuPct: number;
  coordinatorRssMiB: number;
  coordinatorPeakRssMiB: number;
  agentsCpuPct: number;
  natsCpuPct: number;
  natsMsgsPerS: number;
  natsBytesPerS: number;
  heartbeatsPerS: number;
  aliveAfterWindow: number;
  oldestHeartbeatAgeMs: number;
  hostsReplyBytes: number | null;
  hostsError: string | null;
  psMs: number;
  psReplyBytes: number;
  /** Replies over nats-server's default max_payload (1 MiB): refused on a default server. */
  overDefaultPayload: string[];
  drain: { host: string; state: string; ms: number; moved: number; stayed: number; failed: number; expectedMs: number; maxDowntimeMs: number | null; bytes: number; verified: string; coordinatorCpuPct: number;
    /** Mean duration of one move's migration (preflight to cleanup), and each lane's time between its migrations (finding the workload, starting, recording). */
    migrationMsAvg: number; laneGapMs: number };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function launch(cmd: string, args: string[], logFile: string, o: { stdout?: 'pipe' } = {}): ChildProcess {
  const log = createWriteStream(logFile);
  const p = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', o.stdout ?? 'pipe', 'pipe'] });
  if (!o.stdout) p.stdout?.pipe(log);
  p.stderr?.pipe(log);
  started.add(p);
  p.once('exit', () => started.delete(p));
  return p;
}

/** SIGTERM, then SIGKILL if it has not exited within 5 s. */
async function end(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  if (await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)])) return;
  p.kill('SIGKILL');
  await exited;
}

const cpuTicks = (pid: number): number => {
  const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return Number(rest[11]) + Number(rest[12]);
};
const statusKiB = (pid: number, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const round1 = (n: number) => Math.round(n * 10) / 10;

/** CPU % of one core used by `pids` between two samples. */
function cpuMeter(pids: number[]): () => number {
  const t0 = performance.now();
  const c0 = pids.reduce((n, p) => n + cpuTicks(p), 0);
  return () => round1((100 * (pids.reduce((n, p) => n + cpuTicks(p), 0) - c0) / CLK_TCK) / ((performance.now() - t0) / 1000));
}

async function varz(monitor: string): Promise<{ in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number }> {
  return (await (await fetch(`${monitor}/varz`)).json()) as { in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number };
}

function coord<E extends keyof CoordinatorApi>(nc: NatsConnection, e: E, req: z.input<CoordinatorApi[E]['request']>, timeoutMs?: number) {
  const spec = coordinatorApi[e] as EndpointSpec<z.ZodType, z.ZodType>;
  return call(nc, subjects.coordinator(e), spec, req, timeoutMs ? { timeoutMs } : {}) as Promise<z.infer<CoordinatorApi[E]['reply']>>;
}

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** The `hosts` endpoint's answer; at some fleet size it no longer fits one NATS message. */
async function hostsView(nc: NatsConnection) {
  try {
    const hosts = await coord(nc, 'hosts', {}, 10_000);
    return { hosts, bytes: JSON.stringify(hosts).length, error: null };
  } catch (err) {
    return { hosts: null, bytes: null, error: (err as Error).message };
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: Math.round(performance.now() - t), value };
}

async function benchSize(n: number): Promise<Row> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `ferry-bench-fleet-${n}-`));
  let nats: ChildProcess | undefined;
  let coordinator: ChildProcess | undefined;
  const agents: ChildProcess[] = [];
  let nc: NatsConnection | undefined;
  let ok = false;
  try {
    // --- nats-server: loopback only, JetStream in the temp dir, monitoring on loopback ---------
    const [port, httpPort] = [await freePort(), await freePort()];
    writeFileSync(
      path.join(dir, 'nats.conf'),
      `listen: 127.0.0.1:${port}\nhttp: 127.0.0.1:${httpPort}\nserver_name: bench-fleet\nmax_payload: ${BENCH_MAX_PAYLOAD}\njetstream {\n  store_dir: "${path.join(dir, 'js')}"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}\n`,
    );
    nats = launch('nats-server', ['-c', path.join(dir, 'nats.conf')], path.join(dir, 'nats.log'));
    const url = `nats://127.0.0.1:${port}`;
    const monitor = `http://127.0.0.1:${httpPort}`;
    await until('nats-server', 20_000, async () => ((await fetch(`${monitor}/healthz?js-enabled-only=true`)).ok ? true : null));
    nc = await connect({ servers: url, name: 'ferry-bench-fleet' });

    // --- the real coordinator --------------------------------------------------------------------
    writeFileSync(path.join(dir, 'coordinator.json'), JSON.stringify({ id: 'bench', nats: { servers: [url] } }));
    coordinator = launch(process.execPath, ['--import', 'tsx', 'coordinator/main.ts', '--config', path.join(dir, 'coordinator.json')], path.join(dir, 'coordinator.log'));
    const cpid = coordinator.pid!;

    // --- simulated agents, up to 4 processes ------------------------------------------------------
    const procs = Math.min(4, Math.max(1, Math.ceil(n / 125)));
    const per = Math.ceil(n / procs);
    const ready: Promise<void>[] = [];
    for (let first = 1; first <= n; first += per) {
      const count = Math.min(per, n - first + 1);
      const p = launch(
        process.execPath,
        ['--import', 'tsx', 'bench/fleet-agents.ts', '--server', url, '--first', String(first), '--count', String(count), '--workloads', String(PER_HOST), '--interval-ms', String(INTERVAL_MS)],
        path.join(dir, `agents-${first}.log`),
        { stdout: 'pipe' },
      );
      agents.push(p);
      ready.push(
        new Promise((resolve, reject) => {
          createInterface({ input: p.stdout! }).on('line', (l) => l.includes('"ready":true') && resolve());
          p.once('exit', (code) => reject(new Error(`simulated agents ${first}.. exited (${code}); see ${dir}/agents-${first}.log`)));
        }),
      );
    }
    await Promise.all(ready);
    progress(`[${n}] ${n} simulated hosts in ${procs} process(es) heartbeating; waiting for the coordinator to see them alive`);
    let lastShown = -1;
    await until(`${n} hosts alive`, 240_000, async () => {
      const v = await hostsView(nc!);
      const alive = v.hosts?.filter((h) => h.alive).length ?? 0;
      if (alive !== lastShown) progress(`[${n}] coordinator: ${v.hosts ? `${alive}/${n} alive` : `hosts endpoint failed: ${v.error}`}`);
      lastShown = alive;
      return alive === n ? true : null;
    });

    // --- steady state: heartbeats only -----------------------------------------------------------
    await sleep(3_000);
    progress(`[${n}] steady-state window: ${windowS} s`);
    const natsPid = nats.pid!;
    const agentPids = agents.map((a) => a.pid!);
    const v0 = await varz(monitor);
    const [coordCpu, agentsCpu, natsCpu] = [cpuMeter([cpid]), cpuMeter(agentPids), cpuMeter([natsPid])];
    const t0 = performance.now();
    await sleep(windowS * 1000);
    const v1 = await varz(monitor);
    const secs = (performance.now() - t0) / 1000;
    const coordinatorCpuPct = coordCpu();
    const agentsCpuPct = agentsCpu();
    const natsCpuPct = natsCpu();
    const rss = statusKiB(cpid, 'VmRSS') / 1024;
    const view = await hostsView(nc);
    const now = Date.now();
    const ages = (view.hosts ?? []).map((h) => (h.lastSeen ? now - Date.parse(h.lastSeen) : Infinity));
    const natsMsgsPerS = Math.round((v1.in_msgs + v1.out_msgs - v0.in_msgs - v0.out_msgs) / secs);
    const natsBytesPerS = Math.round((v1.in_bytes + v1.out_bytes - v0.in_bytes - v0.out_bytes) / secs);
    progress(`[${n}] coordinator ${coordinatorCpuPct}% CPU, ${Math.round(rss)} MiB; NATS ${natsMsgsPerS} msg/s; ${view.hosts ? `${view.hosts.filter((h) => h.alive).length} alive` : view.error}`);

    const ps = await timed(() => coord(nc!, 'ps', {}, 30_000));
    const psReplyBytes = JSON.stringify(ps.value).length;

    // --- planning ----------------------------------------------------------------------------------
    const drainPlans: { ms: number; value: FleetJob }[] = [];
    for (let i = 0; i < repeats; i++) drainPlans.push(await timed(() => coord(nc!, 'drain', { host: hostName(1), dryRun: true })));
    const rebalancePlans: { ms: number; value: FleetJob }[] = [];
    for (let i = 0; i < repeats; i++) rebalancePlans.push(await timed(() => coord(nc!, 'rebalance', { dryRun: true })));
    const drainPlanMs = median(drainPlans.map((p) => p.ms));
    const rebalancePlanMs = median(rebalancePlans.map((p) => p.ms));
    progress(`[${n}] plan: drain ${drainPlanMs} ms (${drainPlans.at(-1)!.value.items.length} items), rebalance ${rebalancePlanMs} ms (${rebalancePlans.at(-1)!.value.items.length} moves)`);

    // --- a real drain of one host ------------------------------------------------------------------
    const host = hostName(1);
    const drainCpu = cpuMeter([cpid]);
    const drained = await timed(async () => {
      const job = await coord(nc!, 'drain', { host });
      let last = '';
      return until(`drain ${job.id}`, 600_000, async () => {
        const [j] = await coord(nc!, 'fleet', { id: job.id });
        const moved = j!.items.filter((i) => i.state === 'moved').length;
        const line = `${moved}/${j!.items.length} moved`;
        if (line !== last) progress(`[${n}] drain ${host}: ${line}`);
        last = line;
        return j!.state === 'running' ? null : j!;
      });
    });
    const job = drained.value;
    const drainCpuPct = drainCpu();
    // What the agents say: the drained host holds nothing, each destination holds what it took.
    const left = await call(nc, subjects.agent(host, 'workloads'), agentApi.workloads, {});
    const misplaced: string[] = [];
    for (const it of job.items.filter((i) => i.state === 'moved')) {
      const there = await call(nc, subjects.agent(it.to!, 'workloads'), agentApi.workloads, {});
      if (!there.some((w) => w.name === it.workload && w.state === 'running')) misplaced.push(`${it.workload} not on ${it.to}`);
    }
    const verified = left.length === 0 && misplaced.length === 0 ? 'ok' : `${left.length} left on ${host}; ${misplaced.join(', ')}`;
    const downtimes = job.items.map((i) => i.downtimeMs).filter((d): d is number => d !== null);
    // Each move's migration as the coordinator recorded it: what a lane spent outside migrations is the coordinator's own overhead.
    const migrationMs: number[] = [];
    for (const it of job.items.filter((i) => i.migrationId)) {
      const [m] = await coord(nc, 'status', { id: it.migrationId! });
      if (m?.totalMs != null) migrationMs.push(m.totalMs);
    }
    const inMigrations = migrationMs.reduce((a, b) => a + b, 0);
    progress(`[${n}] drain ${host}: ${job.state} in ${drained.ms} ms (plan expected ${job.expectedMs} ms); agents: ${verified}`);

    ok = true;
    return {
      hosts: n,
      workloads: n * PER_HOST,
      agentProcesses: procs,
      drainPlanMs,
      drainPlanMsAll: drainPlans.map((p) => p.ms),
      drainPlanMoves: drainPlans.at(-1)!.value.items.filter((i) => i.state === 'pending').length,
      rebalancePlanMs,
      rebalancePlanMsAll: rebalancePlans.map((p) => p.ms),
      rebalancePlanMoves: rebalancePlans.at(-1)!.value.items.length,
      rebalanceImbalance: rebalancePlans.at(-1)!.value.imbalance,
      coordinatorCpuPct,
      coordinatorRssMiB: Math.round(rss),
      coordinatorPeakRssMiB: Math.round(statusKiB(cpid, 'VmHWM') / 1024),
      agentsCpuPct,
      natsCpuPct,
      natsMsgsPerS,
      natsBytesPerS,
      heartbeatsPerS: Math.round((n * 1000) / INTERVAL_MS),
      aliveAfterWindow: view.hosts?.filter((h) => h.alive).length ?? -1,
      oldestHeartbeatAgeMs: ages.length ? Math.max(...ages) : -1,
      hostsReplyBytes: view.bytes,
      hostsError: view.error,
      psMs: ps.ms,
      psReplyBytes,
      overDefaultPayload: [...((view.bytes ?? 0) > DEFAULT_MAX_PAYLOAD ? ['hosts'] : []), ...(psReplyBytes > DEFAULT_MAX_PAYLOAD ? ['ps'] : [])],
      drain: {
        host,
        state: job.state,
        ms: drained.ms,
        moved: job.items.filter((i) => i.state === 'moved').length,
        stayed: job.items.filter((i) => i.state === 'stayed').length,
        failed: job.items.filter((i) => i.state === 'failed').length,
        expectedMs: job.expectedMs,
        maxDowntimeMs: downtimes.length ? Math.max(...downtimes) : null,
        bytes: job.items.reduce((t, i) => t + i.bytesTransferred, 0),
        verified,
        coordinatorCpuPct: drainCpuPct,
        migrationMsAvg: migrationMs.length ? Math.round(inMigrations / migrationMs.length) : 0,
        laneGapMs: Math.max(0, Math.round(drained.ms - inMigrations / Math.max(1, Math.min(job.parallel, migrationMs.length)))),
      },
    };
  } finally {
    await nc?.close().catch(() => undefined);
    await Promise.all(agents.map((a) => end(a)));
    await end(coordinator);
    await end(nats);
    if (ok) rmSync(dir, { recursive: true, force: true });
    else progress(`[${n}] failed: logs kept in ${dir}`);
  }
}

const stopAll = () => {
  for (const p of started) p.kill('SIGKILL');
  process.exit(130);
};
process.once('SIGINT', stopAll);
process.once('SIGTERM', stopAll);

const rows: Row[] = [];
for (const n of sizes) {
  progress(`[${n}] starting nats-server, coordinator and ${n} simulated hosts x ${PER_HOST} workloads`);
  rows.push(await benchSize(n));
}
const result = { when: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '' }, workloadsPerHost: PER_HOST, heartbeatIntervalMs: INTERVAL_MS, windowS, repeats, rows };
mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
writeFileSync(path.join(REPO, 'bench/results/fleet.json'), JSON.stringify(result, null, 2));

const pad = (s: string | number, w: number) => String(s).padStart(w);
console.log(`fleet scale: real coordinator + nats-server, simulated agents (${PER_HOST} workloads/host, heartbeat every ${INTERVAL_MS} ms), ${os.cpus().length} CPUs shared`);
console.log(' hosts  drain plan  rebal. plan     ps  coord CPU  coord RSS  NATS msg/s  heartbeats/s    alive   drain 1 host  moved  migration  max downtime');
for (const r of rows)
  console.log(
    [
      pad(r.hosts, 6),
      `${pad(r.drainPlanMs, 8)} ms`,
      `${pad(r.rebalancePlanMs, 9)} ms`,
      `${pad(r.psMs, 4)} ms`,
      `${pad(r.coordinatorCpuPct, 8)}%`,
      `${pad(r.coordinatorRssMiB, 6)} MiB`,
      pad(r.natsMsgsPerS, 11),
      pad(r.heartbeatsPerS, 13),
      pad(`${r.aliveAfterWindow}/${r.hosts}`, 8),
      `${pad(r.drain.ms, 9)} ms`,
      pad(`${r.drain.moved}/${r.drain.moved + r.drain.stayed + r.drain.failed}`, 6),
      `${pad(r.drain.migrationMsAvg, 6)} ms`,
      `${pad(r.drain.maxDowntimeMs ?? '-', 9)} ms`,
      r.drain.verified === 'ok' ? '' : ` ${r.drain.verified}`,
      r.overDefaultPayload.length ? ` (${r.overDefaultPayload.join(', ')} over 1 MiB)` : '',
    ].join(' '),
  );
console.log('saved bench/results/fleet.json');
