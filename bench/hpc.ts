// HPC checkpoint/restore benchmark (issue 14), in one lab of two hosts and one run
// (`npm run bench:hpc`), through the real `ferry` CLI as a user runs it (docs/hpc.md):
//
// 1. For memwriter jobs of each size (resident memory filled, writing at a modest rate so that
//    they keep running): `ferry checkpoint NAME --leave-running`, repeated BENCH_HPC_GAP_S apart:
//    the first is full, the next ones incremental (only the pages written since). For each: how
//    long the job was frozen (the engine's figure, and the longest stall of the job's own status
//    file as the bench saw it), the total time, the bytes it wrote, and the images directory's
//    size (uncompressed pages).
// 2. The same snapshot as an archive (`ferry image export`: tar + zstd): time, size, ratio; and
//    `ferry image import` of it (the unpacking side).
// 3. A checkpoint that ends the job, then `ferry restore NAME --host h2` with the image's pages
//    dropped from the page cache first (cold: read from disk, as another node reads shared
//    storage), and back again to h1 with the image still cached (warm); each time the job's own
//    status must say ok and its write counter must carry on from where it was (not start again).
// 4. The job's own throughput (memwriter's write counter, unthrottled by default: a compute-bound
//    job) over a window under `ferry launch --interval`, against the same window under `ferry
//    launch` without checkpoints, in the same run; windows alternate, the first one at random.
// Prints a table and the targets, and writes bench/results/hpc.json. Progress on stderr.
//
//   BENCH_HPC_SIZES=1024,4096    job sizes in MiB for 1-3
//   BENCH_HPC_REPEATS=3          checkpoints --leave-running per size (the first full, the rest incremental: medians)
//   BENCH_HPC_GAP_S=5            seconds between them (the job writes on meanwhile)
//   BENCH_HPC_RATE=10 BENCH_HPC_PATTERN=hotset   the jobs of 1-3: memwriter's MB/s and pattern
//   BENCH_HPC_WINDOW_S=180       throughput window; BENCH_HPC_INTERVAL_S=60: --interval
//   BENCH_HPC_TP_SIZE=1024 BENCH_HPC_TP_RATE=3000 BENCH_HPC_TP_PATTERN=random   the throughput job
//                                (3000 MB/s is far above what memwriter reaches: it writes flat out)
//   BENCH_HPC_TP_REPEATS=1       pairs of windows (with and without), alternating which goes first
//   BENCH_HPC_THROUGHPUT=0 / BENCH_HPC_CHECKPOINTS=0   skip part 4 / parts 1-3
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CheckpointReply, RestoreReply } from '../shared/job-image.ts';
import type { WorkloadInfo } from '../shared/workload.ts';
import { buildWorkload } from '../test/workloads/harness.ts';

const execFileP = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(REPO, 'bin/ferry.js');
const LAB = process.env.FERRY_LAB ?? 'benchhpc';
const env = { ...process.env, FERRY_LAB: LAB };
const list = (v: string | undefined, d: string): string[] => (v ?? d).split(',').filter(Boolean);
const SIZES = list(process.env.BENCH_HPC_SIZES, '1024,4096').map(Number);
const REPEATS = Math.max(2, Number(process.env.BENCH_HPC_REPEATS ?? 3));
const GAP_S = Number(process.env.BENCH_HPC_GAP_S ?? 5);
const RATE = process.env.BENCH_HPC_RATE ?? '10';
const PATTERN = process.env.BENCH_HPC_PATTERN ?? 'hotset';
const WINDOW_S = Number(process.env.BENCH_HPC_WINDOW_S ?? 180);
const INTERVAL_S = Number(process.env.BENCH_HPC_INTERVAL_S ?? 60);
const TP_SIZE = Number(process.env.BENCH_HPC_TP_SIZE ?? 1024);
const TP_RATE = process.env.BENCH_HPC_TP_RATE ?? '3000';
const TP_PATTERN = process.env.BENCH_HPC_TP_PATTERN ?? 'random';
const TP_REPEATS = Math.max(1, Number(process.env.BENCH_HPC_TP_REPEATS ?? 1));
const GOAL_LOST_PCT = 2;
const MiB = 1 << 20;

const progress = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);
const median = (xs: number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r0 = (v: number) => Math.round(v);
const r1 = (v: number) => Math.round(v * 10) / 10;
const r2 = (v: number) => Math.round(v * 100) / 100;
const rand = () => Math.random().toString(36).slice(2, 8);

/** Every child this bench started and has not seen end (ferry launch steps), for an interrupted run. */
const children = new Set<ChildProcess>();

async function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [BIN, ...args], { env, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A command that must succeed, with --json; its parsed reply and its wall time (CLI start included). */
async function ferryJson<T>(args: string[]): Promise<{ value: T; wallMs: number }> {
  const dash = args.indexOf('--');
  const withJson = dash < 0 ? [...args, '--json'] : [...args.slice(0, dash), '--json', ...args.slice(dash)];
  const t = performance.now();
  const r = await ferry(withJson);
  const wallMs = performance.now() - t;
  if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()} ${r.stdout.trim()}`);
  return { value: JSON.parse(r.stdout) as T, wallMs };
}

// --- the job's own view -------------------------------------------------------------------------

interface MemwriterStatus {
  ok: boolean;
  error: string | null;
  phase?: string;
  writes: number;
}

function readStatus(file: string): MemwriterStatus | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as MemwriterStatus;
  } catch {
    return null;
  }
}

async function untilRunning(file: string, name: string, timeoutMs = 180_000, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = readStatus(file);
    if (st && !st.ok) throw new Error(`${name}: ${st.error}`);
    if (st?.phase === 'running') return;
    if (!alive()) throw new Error(`${name}: its launch ended before it ran`);
    if (Date.now() > deadline) throw new Error(`${name} did not start within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

/**
 * The longest time memwriter's write counter stood still, as seen in its status file (rewritten
 * every ~50 ms while it runs; polled every 10 ms): what the job felt, an upper bound of its
 * freeze by up to one status period (and this process's own scheduling delay).
 */
class StallWatch {
  #writes = -1;
  #at = 0;
  #max = 0;
  #timer: NodeJS.Timeout | null = null;
  constructor(private readonly file: string) {}

  start(): void {
    const st = readStatus(this.file);
    this.#writes = st?.writes ?? -1;
    this.#at = performance.now();
    this.#max = 0;
    this.#timer = setInterval(() => this.#poll(), 10);
  }

  #poll(): void {
    const st = readStatus(this.file);
    if (!st || st.writes === this.#writes) return;
    const now = performance.now();
    this.#max = Math.max(this.#max, now - this.#at);
    this.#writes = st.writes;
    this.#at = now;
  }

  /** The last counter value seen. */
  get writes(): number {
    return this.#writes;
  }

  /** Waits for the counter to move once more (a stall still going on is counted whole), then the longest stall. */
  async stop(timeoutMs = 120_000): Promise<number> {
    const seen = this.#writes;
    const deadline = Date.now() + timeoutMs;
    while (this.#writes === seen && Date.now() < deadline) await sleep(10);
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#writes === seen) throw new Error(`${this.file}: the job made no progress for ${timeoutMs / 1000} s`);
    return this.#max;
  }

  cancel(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}

/** Apparent bytes (what the files hold) and allocated bytes of a directory tree. */
function dirBytes(dir: string): { bytes: number; allocated: number } {
  let bytes = 0;
  let allocated = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      const sub = dirBytes(p);
      bytes += sub.bytes;
      allocated += sub.allocated;
    } else {
      const s = lstatSync(p);
      bytes += s.size;
      allocated += s.blocks * 512;
    }
  }
  return { bytes, allocated };
}

/** Drops one snapshot's files from the page cache (posix_fadvise DONTNEED through dd): the next read comes from disk. */
async function dropFromCache(dir: string): Promise<void> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await dropFromCache(p);
    else if (e.isFile()) await execFileP('dd', [`if=${p}`, 'iflag=nocache', 'count=0', 'status=none']);
  }
}

/** Of a snapshot, the bytes still in the page cache (fincore), or null when it cannot tell. */
async function cachedBytes(dir: string): Promise<number | null> {
  try {
    const files = readdirSync(dir).map((f) => path.join(dir, f)).filter((f) => statSync(f).isFile());
    const { stdout } = await execFileP('fincore', ['--bytes', '--noheadings', '--output', 'RES', ...files]);
    return stdout.split('\n').filter(Boolean).reduce((a, l) => a + Number(l.trim()), 0);
  } catch {
    return null;
  }
}

// --- 1-3: checkpoint, archive, restore ------------------------------------------------------------

interface CheckpointRun {
  incremental: boolean;
  /** Bytes the checkpoint added to the images directory. */
  bytesWritten: number;
  frozenMs: number;
  feltMs: number;
  totalMs: number;
  wallMs: number;
  pagesBytes: number;
  imageBytes: number;
  imageAllocated: number;
}

interface RestoreRun {
  from: string;
  to: string;
  cache: 'cold' | 'warm';
  /** Of the image, in the page cache just before the restore (fincore), if known. */
  cachedMiB: number | null;
  /** The checkpoint that ended the job first. */
  checkpointFrozenMs: number;
  checkpointTotalMs: number;
  restoreMs: number;
  restoreWallMs: number;
  /** From the job's last progress before the checkpoint to its first after the restore, as its status file shows. */
  outageMs: number;
  /** Its status says ok, its counter carried on from the checkpoint (not started again) and ps lists it running there. */
  jobOk: boolean;
  jobNote: string;
}

interface CheckpointSummary {
  count: number;
  frozenMs: number;
  feltMs: number;
  totalMs: number;
  wallMs: number;
  writtenBytes: number;
  imageBytes: number;
  pagesBytes: number;
}

const summary = (cs: CheckpointRun[]): CheckpointSummary => ({
  count: cs.length,
  frozenMs: r0(median(cs.map((c) => c.frozenMs))),
  feltMs: r0(median(cs.map((c) => c.feltMs))),
  totalMs: r0(median(cs.map((c) => c.totalMs))),
  wallMs: r0(median(cs.map((c) => c.wallMs))),
  writtenBytes: median(cs.map((c) => c.bytesWritten)),
  imageBytes: median(cs.map((c) => c.imageBytes)),
  pagesBytes: median(cs.map((c) => c.pagesBytes)),
});

interface SizeRow {
  sizeMiB: number;
  residentMiB: number;
  job: string;
  checkpoints: CheckpointRun[];
  full: CheckpointSummary;
  incremental: CheckpointSummary | null;
  archive: { exportMs: number; archiveBytes: number; imageBytes: number; ratio: number; importMs: number };
  restores: RestoreRun[];
  jobOkAfterCheckpoints: boolean;
}

async function startJob(name: string, sizeMiB: number, rate: string, pattern: string, work: string): Promise<{ statusPath: string; dir: string }> {
  const prog = await buildWorkload('memwriter');
  const dir = mkdtempSync(path.join(work, `${name}-`));
  const statusPath = path.join(dir, 'status.json');
  const r = await ferry(['run', '--host', 'h1', '--name', name, '--cwd', dir, '--json', '--', prog, statusPath, String(sizeMiB), rate, pattern]);
  if (r.code !== 0) throw new Error(`ferry run ${name}: ${r.stderr}`);
  await untilRunning(statusPath, name);
  await sleep(1000);
  return { statusPath, dir };
}

async function listed(name: string): Promise<WorkloadInfo | undefined> {
  const r = await ferry(['ps', '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as WorkloadInfo[]).find((w) => w.name === name) : undefined;
}

/** The job's counter moves on from `beyond` and its status says ok. */
async function carriesOn(statusPath: string, beyond: number, timeoutMs = 60_000): Promise<{ ok: boolean; note: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = readStatus(statusPath);
    if (st && !st.ok) return { ok: false, note: `status not ok: ${st.error}` };
    if (st && st.phase === 'running' && st.writes > beyond) return { ok: true, note: `writes ${beyond} -> ${st.writes}` };
    if (st && st.phase !== 'running') return { ok: false, note: `phase ${st.phase}, writes ${st.writes}: started again?` };
    if (Date.now() > deadline) return { ok: false, note: `no progress beyond ${beyond} within ${timeoutMs / 1000} s` };
    await sleep(50);
  }
}

async function checkpointOnce(name: string, images: string, statusPath: string): Promise<CheckpointRun> {
  const watch = new StallWatch(statusPath);
  watch.start();
  let r: { value: CheckpointReply; wallMs: number };
  try {
    r = await ferryJson<CheckpointReply>(['checkpoint', name, '--images', images, '--leave-running']);
  } catch (err) {
    watch.cancel();
    throw err;
  }
  const feltMs = await watch.stop();
  // The snapshot and the pages store it refers to: the whole directory.
  const size = dirBytes(images);
  return { incremental: r.value.incremental, bytesWritten: r.value.bytesWritten, frozenMs: r.value.frozenMs, feltMs, totalMs: r.value.totalMs, wallMs: r.wallMs, pagesBytes: r.value.pagesBytes, imageBytes: size.bytes, imageAllocated: size.allocated };
}

/** Checkpoint that ends the job, then restore it on `to`; the job's own status judges. */
async function endAndRestore(name: string, images: string, statusPath: string, from: string, to: string, cache: 'cold' | 'warm'): Promise<RestoreRun> {
  const watch = new StallWatch(statusPath);
  watch.start();
  try {
    const ck = await ferryJson<CheckpointReply>(['checkpoint', name, '--images', images]);
    const before = watch.writes;
    if (cache === 'cold') await dropFromCache(ck.value.snapshot);
    const cached = await cachedBytes(ck.value.snapshot);
    progress(`  ${name}: checkpointed and ended on ${from} (frozen ${r0(ck.value.frozenMs)} ms, total ${r0(ck.value.totalMs)} ms); restoring on ${to} (image ${cache}${cached === null ? '' : `, ${r0(cached / MiB)} MiB of it cached`})`);
    const rs = await ferryJson<RestoreReply>(['restore', name, '--images', images, '--host', to]);
    const outageMs = await watch.stop();
    const on = await carriesOn(statusPath, before);
    const w = await listed(name);
    const there = w?.host === to && w.state === 'running';
    return {
      from,
      to,
      cache,
      cachedMiB: cached === null ? null : r1(cached / MiB),
      checkpointFrozenMs: r0(ck.value.frozenMs),
      checkpointTotalMs: r0(ck.value.totalMs),
      restoreMs: r0(rs.value.totalMs),
      restoreWallMs: r0(rs.wallMs),
      outageMs: r0(outageMs),
      jobOk: on.ok && there,
      jobNote: `${on.note}; ps: ${w ? `${w.host} ${w.state}` : 'not listed'}`,
    };
  } finally {
    watch.cancel();
  }
}

async function sizeRun(sizeMiB: number, work: string): Promise<SizeRow> {
  const name = `hpc${sizeMiB}-${rand()}`;
  const label = `memwriter ${sizeMiB} MiB ${RATE} MB/s ${PATTERN}`;
  progress(`${label}: starting ${name} on h1 (fills its memory first)`);
  const job = await startJob(name, sizeMiB, RATE, PATTERN, work);
  const images = path.join(work, `${name}-images`);
  try {
    const residentMiB = r0(((await listed(name))?.memoryBytes ?? 0) / MiB);
    progress(`  ${name}: running, ${residentMiB} MiB resident`);
    const checkpoints: CheckpointRun[] = [];
    let okAfter = true;
    for (let i = 0; i < REPEATS; i++) {
      if (i > 0) await sleep(GAP_S * 1000);
      const c = await checkpointOnce(name, images, job.statusPath);
      checkpoints.push(c);
      const on = await carriesOn(job.statusPath, readStatus(job.statusPath)?.writes ?? 0);
      okAfter &&= on.ok;
      progress(`  checkpoint --leave-running ${i + 1}/${REPEATS} (${c.incremental ? 'incremental' : 'full'}): frozen ${r0(c.frozenMs)} ms (felt ${r0(c.feltMs)} ms), total ${r0(c.totalMs)} ms, CLI ${r0(c.wallMs)} ms, wrote ${r1(c.bytesWritten / MiB)} MiB, directory ${r1(c.imageBytes / MiB)} MiB; job ${on.ok ? 'ok' : `NOT ok: ${on.note}`}`);
    }
    // The current snapshot as one compressed file, and back.
    const file = path.join(work, `${name}.tar.zst`);
    progress(`  ferry image export (tar + zstd)`);
    const ex = await ferryJson<{ imageBytes: number; archiveBytes: number }>(['image', 'export', images, file]);
    const copy = path.join(work, `${name}-imported`);
    progress(`  exported ${r1(ex.value.imageBytes / MiB)} MiB -> ${r1(ex.value.archiveBytes / MiB)} MiB in ${r0(ex.wallMs)} ms; ferry image import`);
    const im = await ferryJson<unknown>(['image', 'import', file, copy]);
    rmSync(copy, { recursive: true, force: true });
    rmSync(file, { force: true });
    progress(`  imported in ${r0(im.wallMs)} ms`);
    const restores: RestoreRun[] = [];
    restores.push(await endAndRestore(name, images, job.statusPath, 'h1', 'h2', 'cold'));
    progress(`  restored on h2 in ${restores[0]!.restoreMs} ms (CLI ${restores[0]!.restoreWallMs} ms), outage ${restores[0]!.outageMs} ms; job ${restores[0]!.jobOk ? 'ok' : 'NOT ok'}: ${restores[0]!.jobNote}`);
    restores.push(await endAndRestore(name, images, job.statusPath, 'h2', 'h1', 'warm'));
    progress(`  restored on h1 in ${restores[1]!.restoreMs} ms (CLI ${restores[1]!.restoreWallMs} ms), outage ${restores[1]!.outageMs} ms; job ${restores[1]!.jobOk ? 'ok' : 'NOT ok'}: ${restores[1]!.jobNote}`);
    const incremental = checkpoints.filter((c) => c.incremental);
    const row: SizeRow = {
      sizeMiB,
      residentMiB,
      job: label,
      checkpoints: checkpoints.map((c) => ({ ...c, frozenMs: r1(c.frozenMs), feltMs: r0(c.feltMs), totalMs: r1(c.totalMs), wallMs: r0(c.wallMs) })),
      full: summary(checkpoints.filter((c) => !c.incremental)),
      incremental: incremental.length > 0 ? summary(incremental) : null,
      archive: { exportMs: r0(ex.wallMs), archiveBytes: ex.value.archiveBytes, imageBytes: ex.value.imageBytes, ratio: r2(ex.value.imageBytes / ex.value.archiveBytes), importMs: r0(im.wallMs) },
      restores,
      jobOkAfterCheckpoints: okAfter,
    };
    process.stderr.write(`${JSON.stringify(row)}\n`);
    return row;
  } finally {
    await ferry(['stop', name]);
    rmSync(images, { recursive: true, force: true });
    rmSync(job.dir, { recursive: true, force: true });
  }
}

// --- 4: throughput with and without periodic checkpoints ---------------------------------------------

interface Window {
  kind: 'periodic' | 'none';
  /** Index of this window in the run (0 first). */
  order: number;
  seconds: number;
  writes: number;
  writesPerS: number;
  /** Write rate over each interval-long slice of the window. */
  sliceWritesPerS: number[];
  /** Periodic checkpoints that ended inside the window, their freezes, and those that failed. */
  checkpoints: number;
  frozenMs: number[];
  failed: number;
  jobOk: boolean;
}

/** One `ferry launch` of the throughput job, with or without --interval, measured over one window. */
async function launchWindow(kind: Window['kind'], order: number, work: string): Promise<Window> {
  const name = `tp${kind === 'none' ? 'n' : 'p'}-${rand()}`;
  const prog = await buildWorkload('memwriter');
  const dir = mkdtempSync(path.join(work, `${name}-`));
  const statusPath = path.join(dir, 'status.json');
  const images = path.join(work, `${name}-images`);
  const args = ['launch', '--name', name, '--images', images, '--host', 'h1', ...(kind === 'periodic' ? ['--interval', `${INTERVAL_S}s`] : []), '--json', '--', prog, statusPath, String(TP_SIZE), TP_RATE, TP_PATTERN];
  progress(`throughput window ${order + 1} (${kind === 'periodic' ? `checkpoints every ${INTERVAL_S} s` : 'no checkpoints'}): ferry ${args.slice(0, kind === 'periodic' ? 9 : 7).join(' ')} ...`);
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const events: { at: number; event: string; frozenMs?: number }[] = [];
  let buf = '';
  let errText = '';
  child.stdout!.resume();
  child.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const e = JSON.parse(line) as { event: string; frozenMs?: number };
        events.push({ at: performance.now(), event: e.event, ...(e.frozenMs !== undefined ? { frozenMs: e.frozenMs } : {}) });
        if (e.event === 'launch.periodic') progress(`  periodic checkpoint: frozen ${r0(e.frozenMs ?? Number.NaN)} ms`);
        if (e.event === 'launch.periodic-failed') progress(`  periodic checkpoint FAILED: ${line}`);
      } catch {
        errText += `${line}\n`;
      }
    }
  });
  let exited = false;
  const done = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      exited = true;
      children.delete(child);
      resolve(code);
    }),
  );
  try {
    // The launch's clock: its interval starts when the workload has started.
    const deadline = Date.now() + 60_000;
    while (!events.some((e) => e.event === 'launch.started')) {
      if (exited || Date.now() > deadline) throw new Error(`${name}: ferry launch did not start it: ${errText.trim()}`);
      await sleep(50);
    }
    const anchor = events.find((e) => e.event === 'launch.started')!.at;
    await untilRunning(statusPath, name, 180_000, () => !exited);
    // The window starts half an interval after the launch (both kinds, so both jobs are as old):
    // with a window of whole intervals, it holds exactly window/interval periodic checkpoints.
    const startAt = Math.max(anchor + (INTERVAL_S * 1000) / 2, performance.now() + 2000);
    await sleep(startAt - performance.now());
    const samples: { at: number; writes: number }[] = [];
    const sample = () => {
      const st = readStatus(statusPath);
      if (st && !st.ok) throw new Error(`${name}: ${st.error}`);
      if (st) samples.push({ at: performance.now(), writes: st.writes });
    };
    sample();
    const t0 = samples[0]!.at;
    const endAt = t0 + WINDOW_S * 1000;
    let nextLog = t0 + 30_000;
    while (performance.now() < endAt) {
      if (exited) throw new Error(`${name}: ferry launch ended during the window: ${errText.trim()}`);
      await sleep(Math.min(1000, Math.max(0, endAt - performance.now())));
      sample();
      if (performance.now() >= nextLog) {
        nextLog += 30_000;
        const last = samples[samples.length - 1]!;
        progress(`  ${r0((last.at - t0) / 1000)} s of ${WINDOW_S}: ${r0((last.writes - samples[0]!.writes) / ((last.at - t0) / 1000))} writes/s`);
      }
    }
    const first = samples[0]!;
    const last = samples[samples.length - 1]!;
    const seconds = (last.at - first.at) / 1000;
    const slices: number[] = [];
    for (let s = first.at; s + INTERVAL_S * 1000 <= last.at + 500; s += INTERVAL_S * 1000) {
      const a = samples.find((x) => x.at >= s)!;
      const b = [...samples].reverse().find((x) => x.at <= s + INTERVAL_S * 1000 + 500)!;
      if (b.at > a.at) slices.push(r0((b.writes - a.writes) / ((b.at - a.at) / 1000)));
    }
    const inside = events.filter((e) => e.at >= first.at && e.at <= last.at);
    const on = await carriesOn(statusPath, last.writes);
    const w: Window = {
      kind,
      order,
      seconds: r1(seconds),
      writes: last.writes - first.writes,
      writesPerS: r0((last.writes - first.writes) / seconds),
      sliceWritesPerS: slices,
      checkpoints: inside.filter((e) => e.event === 'launch.periodic').length,
      frozenMs: inside.filter((e) => e.event === 'launch.periodic').map((e) => r0(e.frozenMs ?? Number.NaN)),
      failed: inside.filter((e) => e.event === 'launch.periodic-failed').length,
      jobOk: on.ok,
    };
    progress(`  ${kind}: ${w.writesPerS} writes/s over ${w.seconds} s (slices ${slices.join(', ')}), ${w.checkpoints} checkpoints inside (frozen ${w.frozenMs.join(', ') || '-'} ms)`);
    return w;
  } finally {
    // SIGTERM: the step stops its workload (not checkpointed) and exits 143.
    if (!exited) child.kill('SIGTERM');
    const code = await Promise.race([done, sleep(60_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      child.kill('SIGKILL');
      await done;
    }
    await ferry(['stop', name]);
    rmSync(images, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Throughput {
  job: string;
  intervalS: number;
  windowS: number;
  windows: Window[];
  withWritesPerS: number;
  withoutWritesPerS: number;
  lostPct: number;
  /** The periodic checkpoints' freezes as a share of the windows with them. */
  frozenSharePct: number;
  /** Spread of the windows without checkpoints' slices: (max - min) / median, in %. */
  baselineSpreadPct: number;
  goalMet: boolean;
}

async function throughput(work: string): Promise<Throughput> {
  const windows: Window[] = [];
  // Alternating pairs, the first kind drawn at random: neither always goes first.
  let first: Window['kind'] = Math.random() < 0.5 ? 'none' : 'periodic';
  for (let i = 0; i < TP_REPEATS; i++) {
    const second: Window['kind'] = first === 'none' ? 'periodic' : 'none';
    windows.push(await launchWindow(first, windows.length, work));
    windows.push(await launchWindow(second, windows.length, work));
    first = second;
  }
  const withW = windows.filter((w) => w.kind === 'periodic');
  const without = windows.filter((w) => w.kind === 'none');
  const a = median(withW.map((w) => w.writesPerS));
  const b = median(without.map((w) => w.writesPerS));
  const lostPct = r2((1 - a / b) * 100);
  const frozen = withW.reduce((n, w) => n + w.frozenMs.reduce((x, y) => x + y, 0), 0);
  const slices = without.flatMap((w) => w.sliceWritesPerS);
  return {
    job: `memwriter ${TP_SIZE} MiB ${Number(TP_RATE) >= 1000 ? 'flat out' : `${TP_RATE} MB/s`} ${TP_PATTERN}`,
    intervalS: INTERVAL_S,
    windowS: WINDOW_S,
    windows,
    withWritesPerS: a,
    withoutWritesPerS: b,
    lostPct,
    frozenSharePct: r2((frozen / withW.reduce((n, w) => n + w.seconds * 1000, 0)) * 100),
    baselineSpreadPct: slices.length > 1 ? r2(((Math.max(...slices) - Math.min(...slices)) / median(slices)) * 100) : Number.NaN,
    goalMet: withW.every((w) => w.jobOk && w.failed === 0) && lostPct <= GOAL_LOST_PCT,
  };
}

// --- main ---------------------------------------------------------------------------------------------

interface Target {
  target: string;
  value: string;
  status: 'MET' | 'MISSED' | 'NOT BUILT' | 'NOT RUN';
}

function machine(): Record<string, unknown> {
  return { cpus: os.availableParallelism(), cpuModel: os.cpus()[0]?.model ?? '?', memGiB: r1(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version };
}

async function labDown(): Promise<void> {
  const r = await ferry(['lab', 'down']);
  if (r.code !== 0) progress(`lab down: ${r.stderr.trim()}`);
}

function stopChildren(): void {
  for (const c of children) c.kill('SIGTERM');
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const work = mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-hpc-'));
  const onSignal = () => {
    progress('interrupted: ending the launches this bench started and taking the lab down');
    stopChildren();
    void labDown().finally(() => {
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  progress(`lab ${LAB}: down (leftovers), up with 2 hosts`);
  await labDown();
  const up = await ferry(['lab', 'up', '--hosts', '2']);
  if (up.code !== 0) throw new Error(`lab up: ${up.stderr}`);
  await buildWorkload('memwriter');
  const rows: SizeRow[] = [];
  const errors: string[] = [];
  let tp: Throughput | null = null;
  try {
    if (process.env.BENCH_HPC_THROUGHPUT !== '0') {
      try {
        tp = await throughput(work);
      } catch (err) {
        errors.push(`throughput: ${(err as Error).message}`);
        progress(`throughput: ${(err as Error).message}`);
      }
    }
    if (process.env.BENCH_HPC_CHECKPOINTS !== '0') {
      for (const size of SIZES) {
        try {
          rows.push(await sizeRun(size, work));
        } catch (err) {
          errors.push(`${size} MiB: ${(err as Error).message}`);
          progress(`${size} MiB: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    stopChildren();
    progress('lab down');
    await labDown();
    rmSync(work, { recursive: true, force: true });
  }
  const targets: Target[] = [
    tp
      ? { target: `at most ${GOAL_LOST_PCT} % of the job's throughput lost to checkpoints every ${INTERVAL_S} s`, value: `${tp.lostPct} % (${tp.withWritesPerS} against ${tp.withoutWritesPerS} writes/s; freezes ${tp.frozenSharePct} % of the time; windows without checkpoints vary ${tp.baselineSpreadPct} % slice to slice)`, status: tp.goalMet ? 'MET' : 'MISSED' }
      : { target: `at most ${GOAL_LOST_PCT} % of the job's throughput lost to checkpoints every ${INTERVAL_S} s`, value: 'not run', status: 'NOT RUN' },
    ...rows.map((r): Target => ({
      target: `${r.sizeMiB} MiB: a checkpoint after the first writes only the pages dirtied since (${RATE} MB/s ${PATTERN} for ${GAP_S} s)`,
      value: r.incremental ? `incremental wrote ${r1(r.incremental.writtenBytes / MiB)} MiB against ${r1(r.full.writtenBytes / MiB)} MiB full; frozen ${r.incremental.frozenMs} ms against ${r.full.frozenMs} ms` : 'no incremental checkpoint was taken',
      status: r.incremental && r.incremental.writtenBytes < r.full.writtenBytes / 2 ? 'MET' : 'MISSED',
    })),
    ...SIZES.map((s): Target => {
      const r = rows.find((x) => x.sizeMiB === s);
      return r
        ? { target: `${s} MiB: the job carries on after each checkpoint and each restore on another host (its own checks ok, counter continued)`, value: [`after --leave-running ${r.jobOkAfterCheckpoints ? 'ok' : 'NOT ok'}`, ...r.restores.map((x) => `${x.from}->${x.to} ${x.jobOk ? 'ok' : `NOT ok (${x.jobNote})`}`)].join('; '), status: r.jobOkAfterCheckpoints && r.restores.every((x) => x.jobOk) ? 'MET' : 'MISSED' }
        : { target: `${s} MiB: the job carries on after checkpoints and restores`, value: 'not run', status: 'NOT RUN' };
    }),
  ];
  const result = {
    at: new Date().toISOString(),
    machine: machine(),
    config: { sizes: SIZES, repeats: REPEATS, gapS: GAP_S, rate: RATE, pattern: PATTERN, windowS: WINDOW_S, intervalS: INTERVAL_S, tpSize: TP_SIZE, tpRate: TP_RATE, tpPattern: TP_PATTERN, tpRepeats: TP_REPEATS },
    rows,
    throughput: tp,
    targets,
    errors,
    totalMinutes: r1((Date.now() - t0) / 60_000),
  };
  mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(path.join(REPO, 'bench/results/hpc.json'), `${JSON.stringify(result, null, 2)}\n`);
  printTable(rows, tp, targets);
  console.log(`\n${result.totalMinutes} min; bench/results/hpc.json`);
  if (errors.length) process.exitCode = 1;
}

function printTable(rows: SizeRow[], tp: Throughput | null, targets: Target[]): void {
  const mib = (b: number) => String(r1(b / MiB));
  const head = ['job', 'res MiB', 'full frozen ms', 'felt ms', 'total ms', 'wrote MiB', 'incr frozen ms', 'felt ms', 'total ms', 'wrote MiB', 'dir MiB', 'export ms', 'archive MiB', 'ratio', 'import ms', 'end-ckpt frozen ms', 'restore h2 cold ms', 'restore h1 warm ms', 'outage cold ms', 'job'];
  const body = rows.map((r) => {
    const cold = r.restores.find((x) => x.cache === 'cold');
    const warm = r.restores.find((x) => x.cache === 'warm');
    const inc = r.incremental;
    return [
      r.job,
      String(r.residentMiB),
      String(r.full.frozenMs),
      String(r.full.feltMs),
      String(r.full.totalMs),
      mib(r.full.writtenBytes),
      inc ? String(inc.frozenMs) : '-',
      inc ? String(inc.feltMs) : '-',
      inc ? String(inc.totalMs) : '-',
      inc ? mib(inc.writtenBytes) : '-',
      mib((inc ?? r.full).imageBytes),
      String(r.archive.exportMs),
      mib(r.archive.archiveBytes),
      `${r.archive.ratio.toFixed(2)}x`,
      String(r.archive.importMs),
      cold ? String(cold.checkpointFrozenMs) : '-',
      cold ? `${cold.restoreMs} (${cold.restoreWallMs})` : '-',
      warm ? `${warm.restoreMs} (${warm.restoreWallMs})` : '-',
      cold ? String(cold.outageMs) : '-',
      r.jobOkAfterCheckpoints && r.restores.every((x) => x.jobOk) ? 'ok' : 'NOT ok',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(head));
  for (const b of body) console.log(line(b));
  console.log(`\nfull: the first --leave-running checkpoint; incr: the next ones, ${GAP_S} s apart (medians); wrote: bytes added to the images directory; dir MiB: the directory (snapshot and pages store), uncompressed pages; archive: \`ferry image export\`, tar + zstd, pages the image refers to only; restore ms: the reply's, (CLI wall)`);
  if (tp) {
    console.log(`\nthroughput, ${tp.job}, ${tp.windowS} s windows, \`ferry launch --interval ${tp.intervalS}s\` against \`ferry launch\` without:`);
    for (const w of tp.windows)
      console.log(`  window ${w.order + 1}: ${(w.kind === 'periodic' ? `checkpoints every ${tp.intervalS} s` : 'no checkpoints').padEnd(24)}  ${w.writesPerS} writes/s over ${w.seconds} s; ${w.checkpoints} checkpoints (frozen ${w.frozenMs.join(', ') || '-'} ms)${w.failed ? `, ${w.failed} failed` : ''}`);
    console.log(`  lost ${tp.lostPct} % (freezes ${tp.frozenSharePct} % of the time; slice-to-slice spread without checkpoints ${tp.baselineSpreadPct} %)`);
  }
  console.log('');
  for (const t of targets) console.log(`${t.status.padEnd(9)} ${t.target}: ${t.value}`);
}

await main();
