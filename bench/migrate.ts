// Live migration benchmark, in one lab and one run (`npm run bench`): a synthetic writer
// (memwriter) over resident sizes, write rates and patterns, and the real test workloads, each
// moved back and forth live; for comparison in the same run: the stop-and-copy downtime of the
// same workload, raw TCP throughput between the same two hosts, memcpy throughput, and the
// writer's own speed while pre-copy rounds (about 1 s each) track it against its normal speed.
// Prints a table and writes bench/results/migrate.json.
//
//   BENCH_QUICK=1       a quick subset (256 MiB and 1 GiB, 0 and 50 MB/s, hot-set; 2 repeats)
//   BENCH_REPEATS=N     live migrations per configuration (default 3; 4 GiB: 1)
//   BENCH_SIZES=256,1024,4096  BENCH_RATES=0,10,50,200  BENCH_PATTERNS=random,hotset
//   BENCH_VERIFY_SIZES=256     sizes at which verification before the commit is measured on vs off
//   BENCH_VERIFY_ONLY=1        only that comparison (writes bench/results/verify.json)
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { trackTree } from '../agent/engine/dirty/tree.ts';
import { PageReceiver, PageSender } from '../agent/transfer/pages.ts';
import type { PageSink } from '../agent/transfer/page-sinks.ts';
import { DataListener, connectStream } from '../agent/transfer/stream.ts';
import type { MigrationView } from '../shared/migration.ts';
import type { WorkloadInfo } from '../shared/workload.ts';
import { WORKLOAD_SPECS, buildWorkload, startWorkload, stopWorkload, type WorkloadName } from '../test/workloads/harness.ts';

const execFileP = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LAB = process.env.FERRY_LAB ?? 'bench';
const env = { ...process.env, FERRY_LAB: LAB };
const quick = process.env.BENCH_QUICK === '1';
const list = (v: string | undefined, d: string): string[] => (v ?? d).split(',').filter(Boolean);
const SIZES = list(process.env.BENCH_SIZES, quick ? '256,1024' : '256,1024,4096').map(Number);
const RATES = list(process.env.BENCH_RATES, quick ? '0,50' : '0,10,50,200').map(Number);
const PATTERNS = list(process.env.BENCH_PATTERNS, quick ? 'hotset' : 'random,hotset');
const REPEATS = Number(process.env.BENCH_REPEATS ?? (quick ? 2 : 3));
const MiB = 1 << 20;

async function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [path.join(REPO, 'bin/ferry.js'), ...args], { env, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const median = (xs: number[]) => pct(xs, 50);
const r1 = (v: number) => Math.round(v * 10) / 10;

// --- reference figures --------------------------------------------------------------------------

function memcpyGBps(): number {
  const a = Buffer.alloc(256 * MiB, 1);
  const b = Buffer.alloc(256 * MiB);
  let best = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    a.copy(b);
    best = Math.max(best, a.length / ((performance.now() - t) / 1000) / 1e9);
  }
  return best;
}

/** Raw TCP from h1's namespace to h2's: 1 GiB through one connection, best of three. */
async function rawTcpMBps(): Promise<number> {
  const server = `const n=require('net');const s=n.createServer(c=>{let b=0;c.on('data',d=>b+=d.length);c.on('end',()=>{c.end(String(b))})});s.listen(5999,'10.77.0.12',()=>console.log('up'));setTimeout(()=>process.exit(0),60000)`;
  const srv = spawn('ip', ['netns', 'exec', `ferry-${LAB}-h2`, process.execPath, '-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => srv.stdout.once('data', () => resolve()));
  const client = `const n=require('net');const buf=Buffer.alloc(1<<20,7);const total=1024;let sent=0;const t=process.hrtime.bigint();const c=n.connect(5999,'10.77.0.12',()=>{const w=()=>{while(sent<total){sent++;if(!c.write(buf)){c.once('drain',w);return}}c.end()};w()});c.on('data',()=>{const s=Number(process.hrtime.bigint()-t)/1e9;console.log((total*1048576/s/1e6).toFixed(1));process.exit(0)})`;
  let best = 0;
  try {
    for (let i = 0; i < 3; i++) {
      const { stdout } = await execFileP('ip', ['netns', 'exec', `ferry-${LAB}-h1`, process.execPath, '-e', client]);
      best = Math.max(best, Number(stdout.trim()));
    }
  } finally {
    srv.kill();
  }
  return best;
}

/** memwriter's page writes per second, unthrottled (rate far above what it reaches), normally and under ~1 s pre-copy rounds. */
async function speedUnderPrecopy(): Promise<{ normal: number; precopy: number; ratio: number; rounds: number }> {
  const w = await startWorkload('memwriter', { args: ['1024', '3000', 'random'], timeoutMs: 60_000 });
  const writes = () => Number((JSON.parse(readFileSync(w.statusPath, 'utf8')) as { writes: number }).writes);
  const phase = () => (JSON.parse(readFileSync(w.statusPath, 'utf8')) as { phase: string }).phase;
  try {
    while (phase() !== 'running') await sleep(100);
    await sleep(1000);
    const rate = async (ms: number) => {
      const a = writes();
      const t = performance.now();
      await sleep(ms);
      return (writes() - a) / ((performance.now() - t) / 1000);
    };
    const normal = await rate(4000);
    // Rounds into a sink that drops the pages, over a real stream on loopback: the tracker's and
    // the sender's cost on the workload, not the network's.
    const auth = { migrationId: 'm-bench-speed', secret: 'x'.repeat(32) };
    const listener = await DataListener.open('127.0.0.1', auth);
    const [out, inc] = await Promise.all([connectStream(listener.endpoint, auth), listener.accept({ timeoutMs: 5000 })]);
    const sink: PageSink = { write: () => undefined, zero: () => undefined };
    const receiver = new PageReceiver(inc, sink);
    const recv = (async () => {
      while (await receiver.receiveRound());
    })();
    const sender = new PageSender(out);
    const tracker = trackTree(w.pid);
    let rounds = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const t = performance.now();
        const r = await tracker.round();
        await sender.sendRound(r, (pid, addr, data) => tracker.noteSent(pid, addr, data));
        rounds++;
        const left = 1000 - (performance.now() - t);
        if (left > 0) await sleep(left);
      }
    })();
    await sleep(3000); // round 1 (the whole region) out of the way
    const during = await rate(4000);
    stop = true;
    await loop;
    tracker.stop();
    await sender.finish();
    await recv;
    out.destroy();
    inc.destroy();
    return { normal: Math.round(normal), precopy: Math.round(during), ratio: during / normal, rounds };
  } finally {
    await stopWorkload(w);
  }
}

// --- migrations ---------------------------------------------------------------------------------

interface Run {
  downtimeMs: number;
  predictedMs: number | null;
  totalMs: number;
  bytesOnWire: number;
  rounds: number;
  switchover: string | null;
  throttled: boolean;
  round1Bps: number;
  phases: Record<string, number>;
  verification: MigrationView['verification'];
}

async function migrate(name: string, to: string, extra: string[] = []): Promise<Run> {
  const r = await ferry(['migrate', name, '--to', to, '--json', ...extra]);
  const v = JSON.parse(r.stdout) as MigrationView;
  if (v.outcome !== 'completed') throw new Error(`${name} -> ${to}: ${v.outcome}: ${v.error?.message ?? r.stderr}`);
  return {
    downtimeMs: v.downtimeMs ?? Number.NaN,
    predictedMs: v.predictedDowntimeMs,
    totalMs: v.totalMs ?? Number.NaN,
    bytesOnWire: v.bytesOnWire,
    rounds: v.rounds.length,
    switchover: v.switchover,
    throttled: v.rounds.some((x) => x.throttled === true),
    round1Bps: Number(v.rounds[0]?.bandwidthBps ?? 0),
    phases: Object.fromEntries(v.phases.map((p) => [p.phase, p.durationMs ?? Number.NaN])),
    verification: v.verification,
  };
}

// --- verification before the commit: on vs off, same workload, same run -----------------------

interface VerifyRow {
  workload: string;
  residentMiB: number;
  migrations: number;
  on: { downtimeMedianMs: number; restoreMedianMs: number };
  off: { downtimeMedianMs: number; restoreMedianMs: number };
  /** Verification's own figures (medians over the verified runs). */
  insideMs: number;
  outsideMs: number;
  pagesPrecopy: number;
  pagesDowntime: number;
  msByResource: Record<string, number>;
}

async function verifyCost(size: number, repeats: number): Promise<VerifyRow> {
  const name = `v${Math.random().toString(36).slice(2, 8)}`;
  const w = await runWorkload('memwriter', name, [String(size), '50', 'hotset']);
  const resident = await w.resident();
  const on: Run[] = [];
  const off: Run[] = [];
  let at = 'h1';
  try {
    // Interleaved, so both see the same machine load.
    for (let i = 0; i < repeats * 2; i++) {
      const to = at === 'h1' ? 'h2' : 'h1';
      const verify = i % 2 === 0;
      (verify ? on : off).push(await migrate(name, to, verify ? [] : ['--no-verify']));
      at = to;
      checkOk(w.statusPath, name);
    }
  } finally {
    await ferry(['stop', name]);
  }
  const vs = on.map((r) => r.verification!).filter(Boolean);
  const keys = [...new Set(vs.flatMap((v) => Object.keys(v.msByResource)))];
  const row: VerifyRow = {
    workload: `memwriter ${size} MiB 50 MB/s hotset`,
    residentMiB: Math.round(resident / MiB),
    migrations: on.length + off.length,
    on: { downtimeMedianMs: median(on.map((r) => r.downtimeMs)), restoreMedianMs: median(on.map((r) => r.phases.restore ?? Number.NaN)) },
    off: { downtimeMedianMs: median(off.map((r) => r.downtimeMs)), restoreMedianMs: median(off.map((r) => r.phases.restore ?? Number.NaN)) },
    insideMs: r1(median(vs.map((v) => v.insideMs))),
    outsideMs: r1(median(vs.map((v) => v.outsideMs))),
    pagesPrecopy: median(vs.map((v) => v.pagesChecked.precopy)),
    pagesDowntime: median(vs.map((v) => v.pagesChecked.downtime)),
    msByResource: Object.fromEntries(keys.map((k) => [k, r1(median(vs.map((v) => v.msByResource[k] ?? 0)))])),
  };
  process.stderr.write(`${JSON.stringify(row)}\n`);
  return row;
}

function printVerify(rows: VerifyRow[]): void {
  console.log('\nverification before the commit (medians): downtime on/off, restore phase on/off, verification inside/outside the downtime');
  for (const r of rows)
    console.log(
      `${r.workload} (${r.residentMiB} MiB, ${r.migrations} migrations): downtime ${r.on.downtimeMedianMs}/${r.off.downtimeMedianMs} ms, restore ${r.on.restoreMedianMs}/${r.off.restoreMedianMs} ms; ` +
        `verification ${r.insideMs} ms inside (${Object.entries(r.msByResource).map(([k, v]) => `${k} ${v}`).join(', ')}), ${r.outsideMs} ms outside; pages checked ${r.pagesPrecopy} during pre-copy, ${r.pagesDowntime} inside`,
    );
}

const VERIFY_SIZES = list(process.env.BENCH_VERIFY_SIZES, '256').map(Number);

async function verifyOnly(): Promise<void> {
  await ferry(['lab', 'down']);
  const up = await ferry(['lab', 'up', '--hosts', '2']);
  if (up.code !== 0) throw new Error(`lab up: ${up.stderr}`);
  try {
    const rows: VerifyRow[] = [];
    for (const size of VERIFY_SIZES) rows.push(await verifyCost(size, REPEATS));
    mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
    writeFileSync(path.join(REPO, 'bench/results/verify.json'), `${JSON.stringify({ at: new Date().toISOString(), repeats: REPEATS, rows }, null, 2)}\n`);
    printVerify(rows);
  } finally {
    await ferry(['lab', 'down']);
  }
}

async function runWorkload(kind: WorkloadName, name: string, args: string[]): Promise<{ statusPath: string; resident: () => Promise<number> }> {
  const prog = await buildWorkload(kind);
  const dir = mkdtempSync(path.join(tmpdir(), `ferry-bench-${name}-`));
  const statusPath = path.join(dir, 'status.json');
  const argv = WORKLOAD_SPECS[kind].kind === 'python' ? ['/usr/bin/python3', prog, statusPath, ...args] : [prog, statusPath, ...args];
  const r = await ferry(['run', '--host', 'h1', '--name', name, '--cwd', dir, '--json', '--', ...argv]);
  if (r.code !== 0) throw new Error(`ferry run ${name}: ${r.stderr}`);
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const st = JSON.parse(readFileSync(statusPath, 'utf8')) as { phase?: string; ok: boolean; error: string | null };
      if (!st.ok) throw new Error(`${name}: ${st.error}`);
      if (kind !== 'memwriter' || st.phase === 'running') break;
    } catch (err) {
      if ((err as Error).message.startsWith(name)) throw err;
    }
    if (Date.now() > deadline) throw new Error(`${name} did not start`);
    await sleep(200);
  }
  await sleep(1000);
  const resident = async () => ((JSON.parse((await ferry(['ps', '--json'])).stdout) as WorkloadInfo[]).find((w) => w.name === name)?.memoryBytes ?? 0);
  return { statusPath, resident };
}

function checkOk(statusPath: string, name: string): void {
  const st = JSON.parse(readFileSync(statusPath, 'utf8')) as { ok: boolean; error: string | null };
  if (!st.ok) throw new Error(`${name} failed its own checks after migrating: ${st.error}`);
}

interface Row {
  workload: string;
  residentMiB: number;
  downtime: { min: number; median: number; p99: number };
  predictedMedian: number | null;
  totalMedianMs: number;
  wireOverResident: number;
  rounds: number;
  switchover: string;
  throttled: boolean;
  stopAndCopyMs: number;
  improvement: number;
  dataPlaneMBps: number;
  /** Median duration of the phases inside the downtime (ms). */
  phasesMedianMs: Record<string, number>;
}

async function bench(label: string, kind: WorkloadName, args: string[], repeats: number): Promise<Row> {
  const name = `b${Math.random().toString(36).slice(2, 8)}`;
  const w = await runWorkload(kind, name, args);
  const resident = await w.resident();
  const runs: Run[] = [];
  let at = 'h1';
  try {
    for (let i = 0; i < repeats; i++) {
      const to = at === 'h1' ? 'h2' : 'h1';
      runs.push(await migrate(name, to));
      at = to;
      checkOk(w.statusPath, name);
    }
    const to = at === 'h1' ? 'h2' : 'h1';
    const sc = await migrate(name, to, ['--stop-and-copy']);
    checkOk(w.statusPath, name);
    const d = runs.map((r) => r.downtimeMs);
    const row: Row = {
      workload: label,
      residentMiB: Math.round(resident / MiB),
      downtime: { min: Math.min(...d), median: median(d), p99: pct(d, 99) },
      predictedMedian: median(runs.map((r) => r.predictedMs ?? Number.NaN)),
      totalMedianMs: median(runs.map((r) => r.totalMs)),
      wireOverResident: Math.round((median(runs.map((r) => r.bytesOnWire)) / Math.max(1, resident)) * 100) / 100,
      rounds: median(runs.map((r) => r.rounds)),
      switchover: [...new Set(runs.map((r) => r.switchover ?? '-'))].join('/'),
      throttled: runs.some((r) => r.throttled),
      stopAndCopyMs: sc.downtimeMs,
      improvement: r1(sc.downtimeMs / median(d)),
      dataPlaneMBps: r1(Math.max(...runs.map((r) => r.round1Bps)) / 1e6),
      phasesMedianMs: Object.fromEntries(['freeze', 'transfer', 'restore', 'commit', 'resume'].map((p) => [p, median(runs.map((r) => r.phases[p] ?? Number.NaN))])),
    };
    process.stderr.write(`${JSON.stringify(row)}\n`);
    return row;
  } finally {
    await ferry(['stop', name]);
  }
}

// --- main -----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = Date.now();
  await ferry(['lab', 'down']);
  const up = await ferry(['lab', 'up', '--hosts', '2']);
  if (up.code !== 0) throw new Error(`lab up: ${up.stderr}`);
  const rows: Row[] = [];
  try {
    const memcpy = memcpyGBps();
    const tcp = await rawTcpMBps();
    process.stderr.write(`memcpy ${memcpy.toFixed(2)} GB/s, raw TCP h1->h2 ${tcp} MB/s\n`);
    const speed = await speedUnderPrecopy();
    process.stderr.write(`memwriter speed normal ${speed.normal} writes/s, under 1 s pre-copy rounds ${speed.precopy} (${(speed.ratio * 100).toFixed(1)} %)\n`);
    for (const size of SIZES) {
      for (const rate of RATES) {
        for (const pattern of rate === 0 ? [PATTERNS[0]!] : PATTERNS) {
          const reps = size >= 4096 ? Math.min(REPEATS, 1) : REPEATS;
          try {
            rows.push(await bench(`memwriter ${size} MiB ${rate} MB/s ${rate === 0 ? 'idle' : pattern}`, 'memwriter', [String(size), String(rate), pattern], reps));
          } catch (err) {
            process.stderr.write(`memwriter ${size}/${rate}/${pattern}: ${(err as Error).message}\n`);
          }
        }
      }
    }
    for (const kind of ['threads-avx', 'tree-pipes', 'event-loop', 'openmp', 'python-threads', 'sqlite'] as WorkloadName[]) {
      try {
        rows.push(await bench(kind, kind, [], REPEATS));
      } catch (err) {
        process.stderr.write(`${kind}: ${(err as Error).message}\n`);
      }
    }
    const verify: VerifyRow[] = [];
    for (const size of VERIFY_SIZES) {
      try {
        verify.push(await verifyCost(size, REPEATS));
      } catch (err) {
        process.stderr.write(`verification ${size} MiB: ${(err as Error).message}\n`);
      }
    }
    const find = (size: number, rate: number, pattern: string) => rows.find((r) => r.workload === `memwriter ${size} MiB ${rate} MB/s ${pattern}`);
    const g1 = find(1024, 50, 'hotset');
    const a = find(256, 50, 'hotset');
    const b = find(4096, 50, 'hotset');
    const dataPlane = Math.max(0, ...rows.map((r) => r.dataPlaneMBps));
    const targets = [
      { target: 'median downtime <= 50 ms, 1 GiB at 50 MB/s hot-set', value: g1 ? `${g1.downtime.median} ms` : 'not run', met: !!g1 && g1.downtime.median <= 50 },
      { target: '4 GiB within 1.5x of 256 MiB at 50 MB/s hot-set', value: a && b ? `${r1(b.downtime.median / a.downtime.median)}x` : 'not run', met: !!a && !!b && b.downtime.median <= 1.5 * a.downtime.median },
      { target: '>= 20x lower downtime than stop-and-copy, 1 GiB', value: g1 ? `${g1.improvement}x` : 'not run', met: !!g1 && g1.improvement >= 20 },
      { target: 'data plane >= 80 % of raw TCP', value: `${dataPlane} of ${tcp} MB/s (${r1((dataPlane / tcp) * 100)} %)`, met: dataPlane >= 0.8 * tcp },
      { target: 'workload >= 90 % of normal speed under 1 s rounds', value: `${r1(speed.ratio * 100)} %`, met: speed.ratio >= 0.9 },
    ];
    const result = { at: new Date().toISOString(), quick, repeats: REPEATS, memcpyGBps: r1(memcpy), rawTcpMBps: tcp, speed, rows, verify, targets, totalMinutes: r1((Date.now() - t0) / 60_000) };
    mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
    writeFileSync(path.join(REPO, 'bench/results/migrate.json'), `${JSON.stringify(result, null, 2)}\n`);
    printTable(result);
    printVerify(verify);
  } finally {
    await ferry(['lab', 'down']);
  }
}

function printTable(res: { memcpyGBps: number; rawTcpMBps: number; speed: { ratio: number }; rows: Row[]; targets: { target: string; value: string; met: boolean }[] }): void {
  const head = ['workload', 'MiB', 'downtime min/med/p99 ms', 'pred', 'frz/xfer/rest/res', 'stop&copy', 'gain', 'total', 'wire/res', 'rounds', 'switch', 'link MB/s'];
  const body = res.rows.map((r) => [
    r.workload,
    String(r.residentMiB),
    `${r.downtime.min}/${r.downtime.median}/${r.downtime.p99}`,
    r.predictedMedian === null || Number.isNaN(r.predictedMedian) ? '-' : String(r1(r.predictedMedian)),
    ['freeze', 'transfer', 'restore', 'resume'].map((p) => String(r.phasesMedianMs[p] ?? '-')).join('/'),
    String(r.stopAndCopyMs),
    `${r.improvement}x`,
    String(r.totalMedianMs),
    String(r.wireOverResident),
    String(r.rounds),
    `${r.switchover}${r.throttled ? '+thr' : ''}`,
    String(r.dataPlaneMBps),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(head));
  for (const b of body) console.log(line(b));
  console.log(`\nmemcpy ${res.memcpyGBps} GB/s; raw TCP h1->h2 ${res.rawTcpMBps} MB/s; workload speed under 1 s rounds ${r1(res.speed.ratio * 100)} % of normal`);
  for (const t of res.targets) console.log(`${t.met ? 'MET   ' : 'MISSED'} ${t.target}: ${t.value}`);
}

if (process.env.BENCH_VERIFY_ONLY === '1') await verifyOnly();
else await main();
