// Harness for ferry's self-checking workloads (see README.md next to this file).
//
// A workload is started detached from this process (sh -> setsid -> exec, the shell exits at
// once, so the workload is re-parented and libuv never waits on it), in a fresh temp dir, with
// argv[1] = <dir>/status.json. It rewrites that file atomically every ~50 ms with one JSON line
// { name, pid, progress, ok, error, ... }. Every process of a workload carries the status path in
// its command line, which is how stopWorkload() tells the workload's processes from anyone else's.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const WORKLOADS_DIR = dirname(fileURLToPath(import.meta.url));
export const SRC_DIR = join(WORKLOADS_DIR, 'src');
export const BIN_DIR = join(WORKLOADS_DIR, 'bin');

interface CSpec {
  kind: 'c';
  source: string;
  cflags: string[];
  ldflags: string[];
  /** CPU flag from /proc/cpuinfo the binary needs, if any. */
  cpuFlag?: string;
}
interface PythonSpec {
  kind: 'python';
  source: string;
}
export type WorkloadSpec = CSpec | PythonSpec;

const c = (source: string, cflags: string[] = [], ldflags: string[] = [], cpuFlag?: string): CSpec => ({
  kind: 'c',
  source,
  cflags,
  ldflags,
  ...(cpuFlag ? { cpuFlag } : {}),
});

export const WORKLOAD_SPECS = {
  'threads-avx': c('threads-avx.c', ['-pthread', '-mavx2'], [], 'avx2'),
  'tree-pipes': c('tree-pipes.c'),
  'event-loop': c('event-loop.c'),
  shm: c('shm.c'),
  files: c('files.c'),
  clocks: c('clocks.c', [], ['-lrt']),
  memwriter: c('memwriter.c'),
  dirtier: c('dirtier.c', ['-pthread']),
  openmp: c('openmp.c', ['-fopenmp'], ['-lm']),
  'python-threads': { kind: 'python', source: 'python-threads.py' },
  sqlite: { kind: 'python', source: 'sqlite.py' },
} satisfies Record<string, WorkloadSpec>;

export type WorkloadName = keyof typeof WORKLOAD_SPECS;
export const WORKLOAD_NAMES = Object.keys(WORKLOAD_SPECS) as WorkloadName[];

export const BASE_CFLAGS = ['-O2', '-g', '-std=gnu11'];
const COMMON_HEADER = 'wl_common.h';

export interface Workload {
  name: WorkloadName;
  /** pid of the workload's main process (as it reports itself). */
  pid: number;
  statusPath: string;
  /** temp dir owned by this workload (cwd, status files, data files). */
  dir: string;
}

export interface WorkloadStatus {
  name: string;
  pid: number;
  progress: number;
  ok: boolean;
  error: string | null;
  [field: string]: unknown;
}

/** Error raised when a workload reports ok=false (or dies, or times out). */
export class WorkloadError extends Error {
  constructor(
    message: string,
    readonly workload: Workload,
    readonly status: WorkloadStatus | null,
  ) {
    super(message);
    this.name = 'WorkloadError';
  }
}

function specOf(name: string): WorkloadSpec {
  const spec = (WORKLOAD_SPECS as Record<string, WorkloadSpec>)[name];
  if (!spec) throw new Error(`unknown workload '${name}' (known: ${WORKLOAD_NAMES.join(', ')})`);
  return spec;
}

/** Whether this machine can run the workload (CPU features, interpreter). */
export function workloadSupported(name: WorkloadName): boolean {
  const spec = specOf(name);
  if (spec.kind === 'python') return pythonPath() !== null;
  if (spec.cpuFlag) return new RegExp(`^flags\\s*:.*\\b${spec.cpuFlag}\\b`, 'm').test(readFileSync('/proc/cpuinfo', 'utf8'));
  return true;
}

let pythonCache: string | null | undefined;
function pythonPath(): string | null {
  if (pythonCache !== undefined) return pythonCache;
  pythonCache = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : null;
  if (!pythonCache) {
    for (const d of (process.env.PATH ?? '').split(':')) {
      if (d && existsSync(join(d, 'python3'))) {
        pythonCache = join(d, 'python3');
        break;
      }
    }
  }
  return pythonCache;
}

/**
 * Compiles C sources into BIN_DIR/<name>-<hash>, cached by a hash of the sources, the headers they
 * depend on and the flags; returns the binary's path. Safe when several processes build at once:
 * each compiles to its own temp file and renames it into place.
 */
export async function compileCached(c: { name: string; source: string; headers?: string[]; flags: string[]; ldflags?: string[]; cwd?: string }): Promise<string> {
  const ldflags = c.ldflags ?? [];
  const h = createHash('sha256').update(readFileSync(c.source));
  for (const f of c.headers ?? []) h.update('\0').update(readFileSync(f));
  const hash = h.update('\0').update(JSON.stringify([c.flags, ldflags])).digest('hex').slice(0, 16);
  const out = join(BIN_DIR, `${c.name}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(BIN_DIR, { recursive: true });
  const tmp = join(BIN_DIR, `.${c.name}-${hash}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await execFileP('gcc', [...c.flags, '-o', tmp, c.source, ...ldflags], c.cwd ? { cwd: c.cwd } : {});
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as { stderr?: string; message: string };
    throw new Error(`building ${c.name} failed: ${e.stderr || e.message}`);
  }
  return out;
}

/**
 * Compile a C workload (cached by a hash of the sources and flags) into test/workloads/bin/ and
 * return the binary's path. Python workloads return their script's path.
 */
export async function buildWorkload(name: WorkloadName): Promise<string> {
  const spec = specOf(name);
  const src = join(SRC_DIR, spec.source);
  if (spec.kind === 'python') return src;
  return compileCached({ name, source: src, headers: [join(SRC_DIR, COMMON_HEADER)], flags: [...BASE_CFLAGS, ...spec.cflags], ldflags: spec.ldflags, cwd: SRC_DIR });
}

export const TOOLS_DIR = join(WORKLOADS_DIR, 'tools');

/**
 * Compile a helper from tools/<name>.c (e.g. 'ymm-poke', which flips bits of a thread's ymm
 * register through ptrace) into bin/, cached like the workloads. Returns the binary's path.
 */
export async function buildTool(name: string): Promise<string> {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad tool name '${name}'`);
  return compileCached({ name: `tool-${name}`, source: join(TOOLS_DIR, `${name}.c`), flags: [...BASE_CFLAGS] });
}

export interface StartOptions {
  /** extra arguments after the status path (argv[2]...). */
  args?: string[];
  /** how long to wait for the first status (default 15 s). */
  timeoutMs?: number;
  /** extra environment variables. */
  env?: Record<string, string>;
}

const live = new Set<Workload>();

/** Start a workload detached from this process and wait until its first status appears. */
export async function startWorkload(name: WorkloadName, opts: StartOptions = {}): Promise<Workload> {
  const spec = specOf(name);
  const prog = await buildWorkload(name);
  const dir = await mkdtemp(join(tmpdir(), `ferry-wl-${name}-`));
  const statusPath = join(dir, 'status.json');
  let argv: string[];
  if (spec.kind === 'python') {
    const py = pythonPath();
    if (!py) throw new Error('python3 not found');
    argv = [py, prog, statusPath, ...(opts.args ?? [])];
  } else {
    argv = [prog, statusPath, ...(opts.args ?? [])];
  }
  // The background job execs setsid, which (not being a group leader) calls setsid() and execs
  // the workload, so $! is the workload's pid; the shell exits right away.
  const script = 'cd "$1" || exit 1; shift; setsid "$@" </dev/null >/dev/null 2>&1 & echo $!';
  const w: Workload = { name, pid: 0, statusPath, dir };
  let launched = 0;
  try {
    const { stdout } = await execFileP('/bin/sh', ['-c', script, 'sh', dir, ...argv], {
      env: { ...process.env, ...opts.env },
    });
    launched = Number.parseInt(stdout.trim(), 10);
    if (!Number.isInteger(launched) || launched <= 0) throw new Error(`launcher printed '${stdout.trim()}'`);
    w.pid = launched;
    live.add(w);
    const timeoutMs = opts.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = tryReadStatus(w);
      if (st) {
        w.pid = st.pid;
        return w;
      }
      if (!alive(launched)) throw new Error(`workload ${name} exited before writing its first status`);
      if (Date.now() > deadline) throw new Error(`workload ${name} wrote no status within ${timeoutMs} ms`);
      await sleep(20);
    }
  } catch (err) {
    await stopWorkload(w);
    throw err;
  }
}

function parseStatus(text: string): WorkloadStatus {
  const v = JSON.parse(text) as Record<string, unknown>;
  if (
    typeof v.name !== 'string' ||
    typeof v.pid !== 'number' ||
    typeof v.progress !== 'number' ||
    typeof v.ok !== 'boolean' ||
    !(v.error === null || typeof v.error === 'string')
  )
    throw new Error(`malformed status: ${text.slice(0, 200)}`);
  return v as WorkloadStatus;
}

function tryReadStatus(w: Workload): WorkloadStatus | null {
  try {
    return parseStatus(readFileSync(w.statusPath, 'utf8'));
  } catch {
    return null;
  }
}

/** Read the workload's current status (throws if missing or malformed). */
export function readStatus(w: Workload): WorkloadStatus {
  return parseStatus(readFileSync(w.statusPath, 'utf8'));
}

/** Read an auxiliary status file of a multi-process workload: <statusPath>.<role>. */
export function readRoleStatus(w: Workload, role: string): WorkloadStatus {
  return parseStatus(readFileSync(`${w.statusPath}.${role}`, 'utf8'));
}

export interface WaitOptions {
  /** resolve once progress > beyond (default: the progress at call time). */
  beyond?: number;
  timeoutMs?: number;
}

/**
 * Resolve with the status once progress > beyond and ok=true. Reject with a WorkloadError carrying
 * the workload's own error if it reports ok=false, or if it dies or times out.
 */
export async function waitForProgress(w: Workload, opts: WaitOptions = {}): Promise<WorkloadStatus> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const beyond = opts.beyond ?? readStatus(w).progress;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = tryReadStatus(w);
    if (st && !st.ok) throw new WorkloadError(`workload ${w.name} (pid ${w.pid}) reported: ${st.error}`, w, st);
    if (st && st.progress > beyond) return st;
    if (!alive(w.pid)) throw new WorkloadError(`workload ${w.name} (pid ${w.pid}) is not running`, w, st);
    if (Date.now() > deadline)
      throw new WorkloadError(
        `workload ${w.name} (pid ${w.pid}) made no progress beyond ${beyond} within ${timeoutMs} ms (last: ${st?.progress})`,
        w,
        st,
      );
    await sleep(50);
  }
}

/** Resolve with the status once the workload reports ok=false (optionally matching `match`). */
export async function waitForFailure(
  w: Workload,
  opts: { timeoutMs?: number; match?: RegExp } = {},
): Promise<WorkloadStatus> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = tryReadStatus(w);
    if (st && !st.ok) {
      if (opts.match && !opts.match.test(st.error ?? ''))
        throw new WorkloadError(`workload ${w.name} failed with an unexpected error: ${st.error}`, w, st);
      return st;
    }
    if (Date.now() > deadline)
      throw new WorkloadError(`workload ${w.name} did not report a violation within ${timeoutMs} ms`, w, st);
    await sleep(50);
  }
}

function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  const s = procState(pid);
  return s !== null && s !== 'Z' && s !== 'X';
}

/** Parent pid of a process (null if gone). */
export function parentPid(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Whether pid is a process of workload w: its command line names w's status path. */
function belongsTo(pid: number, w: Workload): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a === w.statusPath);
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' '))
        if (c.trim()) out.push(Number(c));
    } catch {
      // task exited
    }
  }
  return out;
}

function statusPids(w: Workload): number[] {
  const out: number[] = [];
  let files: string[];
  try {
    files = readdirSync(w.dir);
  } catch {
    return out;
  }
  const base = 'status.json';
  for (const f of files) {
    if (f !== base && !(f.startsWith(`${base}.`) && !f.includes('.tmp.'))) continue;
    try {
      const st = parseStatus(readFileSync(join(w.dir, f), 'utf8'));
      out.push(st.pid);
      if (Array.isArray(st.pids)) for (const p of st.pids) if (typeof p === 'number' && p > 0) out.push(p);
    } catch {
      // not a status file
    }
  }
  return out;
}

/** Every live process of the workload: its tree plus the pids its status files report. */
export function workloadPids(w: Workload): number[] {
  const seen = new Set<number>();
  const queue = [w.pid, ...statusPids(w)].filter((p) => p > 0);
  while (queue.length) {
    const p = queue.shift()!;
    if (seen.has(p) || !belongsTo(p, w)) continue;
    seen.add(p);
    queue.push(...childrenOf(p));
  }
  return [...seen];
}

function killAll(pids: number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

/** SIGKILL every process of the workload, wait until they are gone, remove its temp dir. */
export async function stopWorkload(w: Workload): Promise<void> {
  // Stop first so nothing forks while we collect, then collect again and kill.
  const first = workloadPids(w);
  killAll(first, 'SIGSTOP');
  const pids = [...new Set([...first, ...workloadPids(w)])];
  killAll(pids, 'SIGKILL');
  const deadline = Date.now() + 5_000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(20);
  live.delete(w);
  await rm(w.dir, { recursive: true, force: true });
  const left = pids.filter(alive);
  if (left.length) throw new Error(`workload ${w.name}: processes ${left.join(', ')} survived SIGKILL`);
}

/** Stop every workload this process started and has not stopped yet. */
export async function stopAllWorkloads(): Promise<void> {
  const errors: unknown[] = [];
  for (const w of [...live]) {
    try {
      await stopWorkload(w);
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw new AggregateError(errors, 'some workloads could not be stopped');
}

/** Workloads started by this process and not yet stopped. */
export function liveWorkloads(): Workload[] {
  return [...live];
}

// Last resort if the test process exits without cleaning up.
process.on('exit', () => {
  for (const w of live) {
    try {
      killAll(workloadPids(w), 'SIGKILL');
      rmSync(w.dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

/** Parse an address the workloads report as "0x7f...". */
export function statusAddress(st: WorkloadStatus, field: string): number {
  const v = st[field];
  if (typeof v !== 'string' || !/^0x[0-9a-f]+$/i.test(v)) throw new Error(`status field ${field} is not an address: ${String(v)}`);
  const n = Number.parseInt(v, 16);
  if (!Number.isSafeInteger(n)) throw new Error(`address ${v} out of range`);
  return n;
}

/** Write bytes into another process's memory through /proc/<pid>/mem (root or ptrace access). */
export function pokeMemory(pid: number, address: number, data: Uint8Array): void {
  const fd = openSync(`/proc/${pid}/mem`, 'r+');
  try {
    const n = writeSync(fd, data, 0, data.length, address);
    if (n !== data.length) throw new Error(`short write to /proc/${pid}/mem: ${n} of ${data.length}`);
  } finally {
    closeSync(fd);
  }
}

/** Read bytes from another process's memory through /proc/<pid>/mem. */
export function peekMemory(pid: number, address: number, length: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, address);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
