// Post-copy benchmark (`npm run bench:postcopy`, part of `npm run bench`), in one lab and one run:
// a 1 GiB writer at 200 MB/s, into its hot set and uniformly, moved back and forth in each mode:
// pre-copy (which throttles a writer that outruns the link), hybrid, and hybrid with its backup on
// shared storage (--postcopy-backup: what it costs). Per run: the downtime, the whole
// migration's time, the writer's own speed during the migration against its speed just before,
// and post-copy's figures (fault latency, pages pushed and fetched, time until the last page).
// Prints a table and issue 15's targets, met or missed; writes bench/results/postcopy.json.
//
//   BENCH_REPEATS=N              migrations per configuration (default 2)
//   BENCH_PATTERNS=hotset,random BENCH_PC_SIZE=1024 BENCH_PC_RATE=200
//   BENCH_PC_MODES=precopy,hybrid,hybrid+backup
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationView } from '../shared/migration.ts';
import { buildWorkload } from '../test/workloads/harness.ts';
import { REPO, ferryCli } from './ferry-cli.ts';

const LAB = process.env.FERRY_LAB ?? 'benchpc';
const env = { ...process.env, FERRY_LAB: LAB };
const list = (v: string | undefined, d: string): string[] => (v ?? d).split(',').filter(Boolean);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 2);
const PATTERNS = list(process.env.BENCH_PATTERNS, 'hotset,random');
const SIZE = Number(process.env.BENCH_PC_SIZE ?? 1024);
const RATE = Number(process.env.BENCH_PC_RATE ?? 200);
const MODES = list(process.env.BENCH_PC_MODES, 'precopy,hybrid,hybrid+backup');
const r1 = (v: number) => Math.round(v * 10) / 10;
const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : r1((s[m - 1]! + s[m]!) / 2);
};

const ferry = ferryCli(env);

interface WriterStatus {
  phase: string;
  ok: boolean;
  error: string | null;
  writes: number;
  hot_pages: number;
  pages: number;
}

interface Run {
  mode: string;
  pattern: string;
  downtimeMs: number;
  totalMs: number;
  rounds: number;
  throttled: boolean;
  postcopy: boolean;
  /** The writer's writes per second during the migration, over its rate in the seconds before. */
  speedDuring: number;
  faultMedianMs: number | null;
  faultP99Ms: number | null;
  demandFaults: number;
  pushedMiB: number;
  fetchedMiB: number;
  lastPageMs: number | null;
  transferMs: number;
  /** The phases inside the downtime (ms). */
  phases: Record<string, number>;
}

const readStatus = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as WriterStatus;

async function writesPerSecond(statusPath: string, ms: number): Promise<number> {
  const a = readStatus(statusPath).writes;
  const t = performance.now();
  await sleep(ms);
  return (readStatus(statusPath).writes - a) / ((performance.now() - t) / 1000);
}

async function migrate(name: string, to: string, statusPath: string, mode: string, pattern: string, backupDir: string): Promise<Run> {
  const before = await writesPerSecond(statusPath, 2000);
  const [m, backup] = mode.split('+');
  const args = ['migrate', name, '--to', to, '--json', '--mode', m!, ...(backup ? ['--postcopy-backup', backupDir] : [])];
  const w0 = readStatus(statusPath).writes;
  const t0 = performance.now();
  const r = await ferry(args);
  const dt = (performance.now() - t0) / 1000;
  const speed = (readStatus(statusPath).writes - w0) / dt;
  const v = JSON.parse(r.stdout) as MigrationView;
  if (v.outcome !== 'completed') throw new Error(`${name} -> ${to} (${mode}): ${v.outcome}: ${v.error?.message ?? r.stderr.slice(-500)}`);
  const st = readStatus(statusPath);
  if (!st.ok) throw new Error(`${name} failed its own checks after a ${mode} migration: ${st.error}`);
  const f = v.postcopy?.figures ?? null;
  return {
    mode,
    pattern,
    downtimeMs: v.downtimeMs ?? Number.NaN,
    totalMs: v.totalMs ?? Number.NaN,
    rounds: v.rounds.length,
    throttled: v.rounds.some((x) => x.throttled === true),
    postcopy: !!v.postcopy,
    speedDuring: r1((speed / Math.max(1, before)) * 100) / 100,
    faultMedianMs: f?.faultLatencyMs?.median ?? null,
    faultP99Ms: f?.faultLatencyMs?.p99 ?? null,
    demandFaults: f?.demandFaults ?? 0,
    pushedMiB: f ? r1(f.bytesPushed / 2 ** 20) : 0,
    fetchedMiB: f ? r1(f.bytesFetched / 2 ** 20) : 0,
    lastPageMs: f?.lastPageMs ?? null,
    transferMs: v.phases.find((p) => p.phase === 'transfer')?.durationMs ?? Number.NaN,
    phases: Object.fromEntries(v.phases.filter((p) => ['freeze', 'transfer', 'restore', 'commit', 'resume'].includes(p.phase)).map((p) => [p.phase, p.durationMs ?? Number.NaN])),
  };
}

interface Row {
  mode: string;
  pattern: string;
  downtimeMedianMs: number;
  totalMedianMs: number;
  speedDuringMedian: number;
  throttled: boolean;
  postcopyRuns: number;
  faultMedianMs: number | null;
  faultP99Ms: number | null;
  lastPageMedianMs: number | null;
  transferMedianMs: number;
  runs: Run[];
}

async function main(): Promise<void> {
  const t0 = Date.now();
  await ferry(['lab', 'down']);
  const up = await ferry(['lab', 'up', '--hosts', '2']);
  if (up.code !== 0) throw new Error(`lab up: ${up.stderr}`);
  const prog = await buildWorkload('memwriter');
  const backupDir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-pc-backup-'));
  const rows: Row[] = [];
  let hotShare = Number.NaN;
  try {
    for (const pattern of PATTERNS) {
      for (const mode of MODES) {
        const name = `pc${Math.random().toString(36).slice(2, 8)}`;
        const dir = mkdtempSync(path.join(tmpdir(), `ferry-bench-${name}-`));
        const statusPath = path.join(dir, 'status.json');
        const run = await ferry(['run', '--host', 'h1', '--name', name, '--cwd', dir, '--json', '--', prog, statusPath, String(SIZE), String(RATE), pattern]);
        if (run.code !== 0) throw new Error(`run: ${run.stderr}`);
        for (;;) {
          try {
            const st = readStatus(statusPath);
            if (st.phase === 'running') {
              if (pattern === 'hotset') hotShare = st.hot_pages / st.pages;
              break;
            }
          } catch {
            // not written yet
          }
          await sleep(200);
        }
        const runs: Run[] = [];
        let at = 'h1';
        try {
          for (let i = 0; i < REPEATS; i++) {
            const to = at === 'h1' ? 'h2' : 'h1';
            try {
              const r = await migrate(name, to, statusPath, mode, pattern, backupDir);
              runs.push(r);
              process.stderr.write(`${JSON.stringify(r)}\n`);
              at = to;
            } catch (err) {
              process.stderr.write(`${pattern} ${mode}: ${(err as Error).message}\n`);
              break;
            }
          }
        } finally {
          await ferry(['stop', name]);
          rmSync(dir, { recursive: true, force: true });
        }
        if (runs.length === 0) continue;
        const pcs = runs.filter((r) => r.faultMedianMs !== null);
        rows.push({
          mode,
          pattern,
          downtimeMedianMs: median(runs.map((r) => r.downtimeMs)),
          totalMedianMs: median(runs.map((r) => r.totalMs)),
          speedDuringMedian: median(runs.map((r) => r.speedDuring)),
          throttled: runs.some((r) => r.throttled),
          postcopyRuns: runs.filter((r) => r.postcopy).length,
          faultMedianMs: pcs.length ? median(pcs.map((r) => r.faultMedianMs!)) : null,
          faultP99Ms: pcs.length ? median(pcs.map((r) => r.faultP99Ms!)) : null,
          lastPageMedianMs: runs.some((r) => r.lastPageMs !== null) ? median(runs.filter((r) => r.lastPageMs !== null).map((r) => r.lastPageMs!)) : null,
          transferMedianMs: median(runs.map((r) => r.transferMs)),
          runs,
        });
      }
    }
  } finally {
    await ferry(['lab', 'down']);
    rmSync(backupDir, { recursive: true, force: true });
  }
  const row = (mode: string, pattern: string) => rows.find((r) => r.mode === mode && r.pattern === pattern);
  const targets = PATTERNS.flatMap((p) => {
    const h = row('hybrid', p);
    const pre = row('precopy', p);
    const b = row('hybrid+backup', p);
    return [
      { target: `${p}: hybrid downtime <= 50 ms`, value: h ? `${h.downtimeMedianMs} ms` : 'not run', met: !!h && h.downtimeMedianMs <= 50 },
      { target: `${p}: hybrid total time against throttled pre-copy`, value: h && pre ? `${h.totalMedianMs} against ${pre.totalMedianMs} ms (${r1(h.totalMedianMs / pre.totalMedianMs)}x)` : 'not run', met: !!h && !!pre && h.totalMedianMs <= pre.totalMedianMs },
      { target: `${p}: the writer's speed during the migration, hybrid against pre-copy`, value: h && pre ? `${Math.round(h.speedDuringMedian * 100)} % against ${Math.round(pre.speedDuringMedian * 100)} % of its speed before` : 'not run', met: !!h && !!pre && h.speedDuringMedian >= pre.speedDuringMedian },
      // Figures the issue asks for, with no bound to meet: listed as met once measured.
      { target: `${p}: fault latency median / p99 (hybrid)`, value: h ? (h.faultMedianMs != null ? `${h.faultMedianMs} / ${h.faultP99Ms} ms` : 'no demand fault') : 'not run', met: !!h },
      { target: `${p}: cost of --postcopy-backup (downtime, hybrid)`, value: b && h ? `${b.downtimeMedianMs} against ${h.downtimeMedianMs} ms` : 'not run', met: !!b && !!h },
    ];
  });
  const result = { at: new Date().toISOString(), sizeMiB: SIZE, rateMBps: RATE, hotShare: r1(hotShare * 1000) / 10, repeats: REPEATS, rows, targets, totalMinutes: r1((Date.now() - t0) / 60_000) };
  mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(path.join(REPO, 'bench/results/postcopy.json'), `${JSON.stringify(result, null, 2)}\n`);
  const head = ['pattern', 'mode', 'downtime', 'total', 'speed during', 'rounds', 'throttled', 'fault med/p99', 'last page', 'transfer'];
  const body = rows.map((r) => [
    r.pattern,
    r.mode,
    `${r.downtimeMedianMs} ms`,
    `${r.totalMedianMs} ms`,
    `${Math.round(r.speedDuringMedian * 100)} %`,
    String(median(r.runs.map((x) => x.rounds))),
    r.throttled ? 'yes' : 'no',
    r.faultMedianMs === null ? '-' : `${r.faultMedianMs}/${r.faultP99Ms} ms`,
    r.lastPageMedianMs === null ? '-' : `${r.lastPageMedianMs} ms`,
    `${r.transferMedianMs} ms`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`${SIZE} MiB writer at ${RATE} MB/s (hot set ${result.hotShare} % of its pages), ${REPEATS} migrations each`);
  console.log(line(head));
  for (const b of body) console.log(line(b));
  for (const t of targets) console.log(`${t.met ? 'MET   ' : 'MISSED'} ${t.target}: ${t.value}`);
}

await main();
