// Runs ferry's conformance programs (programs/<feature>.c, contract in programs/conformance.h):
// start one detached in a fresh directory, wait for `ready`, checkpoint its tree with the engine
// (the original is killed), restore it, create `go`, and read the program's own verdict.
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkpoint, preflightTree } from '../../agent/engine/checkpoint.ts';
import { spawnDetached } from '../../agent/engine/process/detached.ts';
import { isGone } from '../../agent/engine/process/procfs.ts';
import { restore } from '../../agent/engine/restore.ts';
import { removeSysv, sysvUsedBy } from '../../agent/engine/namespaces/sysv.ts';
import { FerryError } from '../../shared/errors.ts';
import { BASE_CFLAGS, compileCached } from '../workloads/harness.ts';

export const PROGRAMS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'programs');
const HEADER = join(PROGRAMS_DIR, 'conformance.h');

export type Outcome = 'restored' | 'refused' | 'skipped' | 'wrong';

export interface Row {
  feature: string;
  outcome: Outcome;
  /** The program's own words (wrong/skip), ferry's refusal, or what went wrong around it. */
  message: string;
  ms: number;
}

export interface RunOptions {
  /** How long a program may take to set up (default 15 s) and to check itself after `go` (default 10 s). */
  readyTimeoutMs?: number;
  resultTimeoutMs?: number;
  /** Programs in flight at once; checkpoint and restore themselves run one at a time. */
  parallel?: number;
}

/** Every feature with a program, sorted. */
export function listFeatures(): string[] {
  return readdirSync(PROGRAMS_DIR)
    .filter((f) => f.endsWith('.c'))
    .map((f) => f.slice(0, -2))
    .sort();
}

/** Compiles programs/<feature>.c (cached); a `// build: FLAGS` line in the source adds compiler/linker flags. */
export function buildProgram(feature: string): Promise<string> {
  const source = join(PROGRAMS_DIR, `${feature}.c`);
  const extra = /^\/\/ build: (.*)$/m.exec(readFileSync(source, 'utf8'))?.[1]?.trim().split(/\s+/) ?? [];
  return compileCached({ name: `cf-${feature}`, source, headers: [HEADER], flags: [...BASE_CFLAGS, '-pthread', '-Wall'], ldflags: extra });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Processes whose command line names this program's directory: the program and its children, original or restored. */
export function programPids(dir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(dir)) out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Kills the program's processes and removes the host SysV objects they used (which outlive them). */
export function killProgram(dir: string): void {
  const pids = programPids(dir);
  const sysv = sysvUsedBy(pids);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  removeSysv(sysv);
}

export function readResult(dir: string): string | null {
  try {
    return readFileSync(join(dir, 'result'), 'utf8').trim();
  } catch {
    return null;
  }
}

export function logTail(dir: string): string {
  try {
    const t = readFileSync(join(dir, 'out.log'), 'utf8').trim();
    return t ? ` (output: ${t.split('\n').slice(-3).join(' | ').slice(0, 300)})` : '';
  } catch {
    return '';
  }
}

/** A result line as a row: ok, skip: why, wrong: what. */
export function verdict(line: string): { outcome: Outcome; message: string } {
  if (line === 'ok') return { outcome: 'restored', message: '' };
  if (line.startsWith('skip:')) return { outcome: 'skipped', message: line.slice(5).trim() };
  if (line.startsWith('wrong:')) return { outcome: 'wrong', message: line.slice(6).trim() };
  return { outcome: 'wrong', message: `unreadable result: ${line.slice(0, 200)}` };
}

/** Waits for a file in dir or the result; 'gone' when the program (its root pid, or any process naming dir) is gone without either. */
export async function waitFile(dir: string, name: string, root: number | null, timeoutMs: number): Promise<'file' | 'result' | 'gone' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (readResult(dir) !== null) return 'result';
    if (existsSync(join(dir, name))) return 'file';
    if (root === null ? programPids(dir).length === 0 : isGone(root)) return readResult(dir) !== null ? 'result' : 'gone';
    if (Date.now() > deadline) return 'timeout';
    await sleep(5);
  }
}

/** One program, start to verdict; never leaves one of its processes behind. */
export async function runFeature(feature: string, opts: RunOptions = {}): Promise<Row> {
  const t0 = performance.now();
  const row = (outcome: Outcome, message: string): Row => ({ feature, outcome, message, ms: Math.round(performance.now() - t0) });
  const bin = await buildProgram(feature);
  const dir = mkdtempSync(join(tmpdir(), `ferry-cf-${feature}-`));
  chmodSync(dir, 0o777); // programs may drop to another uid and still write their result
  const images = join(dir, 'images');
  try {
    const root = spawnDetached([bin, dir], { log: join(dir, 'out.log'), cwd: dir });
    const ready = await waitFile(dir, 'ready', root, opts.readyTimeoutMs ?? 15_000);
    if (ready === 'result') {
      const v = verdict(readResult(dir)!);
      return v.outcome === 'skipped' ? row('skipped', v.message) : row('wrong', `before the checkpoint: ${v.message}`);
    }
    if (ready !== 'file') return row('wrong', `program ${ready === 'gone' ? 'died' : 'never got ready'} before the checkpoint${logTail(dir)}`);
    // What ferry would refuse is refused here, before anything is frozen; the program stays untouched.
    try {
      preflightTree(root);
    } catch (err) {
      if (!(err instanceof FerryError)) throw err;
      const untouched = !isGone(root);
      return row(untouched ? 'refused' : 'wrong', untouched ? err.message : `refused, but the program is gone: ${err.message}`);
    }
    // Checkpoint and restore are synchronous: programs in flight wait for their turn here.
    try {
      checkpoint(root, { imagesDir: images });
    } catch (err) {
      return row('wrong', `checkpoint failed after the freeze: ${(err as Error).message}`);
    }
    try {
      restore(images);
    } catch (err) {
      return row('wrong', `restore failed: ${(err as Error).message}`);
    }
    writeFileSync(join(dir, 'go'), '');
    const done = await waitFile(dir, 'result', root, opts.resultTimeoutMs ?? 10_000);
    if (done === 'file' || done === 'result') return { ...row('wrong', ''), ...verdict(readResult(dir)!) };
    return row('wrong', `restored program ${done === 'gone' ? 'died' : 'never answered'} after go${logTail(dir)}`);
  } finally {
    killProgram(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs features a few at a time; rows come back in the order asked. */
export async function runAll(features: readonly string[], opts: RunOptions = {}, run: (feature: string, opts: RunOptions) => Promise<Row> = runFeature): Promise<Row[]> {
  await Promise.all(features.map((f) => buildProgram(f)));
  const rows: Row[] = new Array(features.length);
  let next = 0;
  const lane = async () => {
    while (next < features.length) {
      const i = next++;
      rows[i] = await run(features[i]!, opts);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 4) }, lane));
  return rows;
}

export function formatTable(rows: readonly Row[]): string {
  const w = Math.max(7, ...rows.map((r) => r.feature.length));
  const lines = [`${'feature'.padEnd(w)}  ${'outcome'.padEnd(8)}  message`];
  for (const r of rows) lines.push(`${r.feature.padEnd(w)}  ${r.outcome.padEnd(8)}  ${r.message}`);
  const count = (o: Outcome) => rows.filter((r) => r.outcome === o).length;
  lines.push('', `${rows.length} programs: ${count('restored')} restored, ${count('refused')} refused, ${count('skipped')} skipped, ${count('wrong')} wrong`);
  return lines.join('\n');
}
