// Shared by the engine integration tests: build C fixtures, start workloads detached (never as
// children of the test process), read their self-checks, and clean up only what was started.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { spawnDetached } from '../../../agent/engine/process/detached.ts';
import { FerryError } from '../../../shared/errors.ts';
import { isGone } from '../../../agent/engine/process/procfs.ts';
import { sys } from '../../../agent/ffi/syscalls.ts';

const here = dirname(fileURLToPath(import.meta.url));
const binDir = join(tmpdir(), 'ferry-engine-fixtures');

/** Compiles a fixture once per source version (cached by content hash, local headers included); concurrent builds rename into place. */
export function buildFixture(name: string, flags: string[] = []): string {
  const src = join(here, `${name}.c`);
  const h = createHash('sha256').update(readFileSync(src)).update(flags.join(' '));
  for (const m of readFileSync(src, 'utf8').matchAll(/^#include "([^"]+)"/gm)) h.update(readFileSync(join(here, m[1]!)));
  const hash = h.digest('hex').slice(0, 12);
  // The hash names the directory, not the binary: tests compare the process name (comm).
  mkdirSync(join(binDir, hash), { recursive: true });
  const out = join(binDir, hash, name);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync('gcc', ['-O2', '-g', '-o', tmp, src, ...flags], { stdio: 'pipe' });
    renameSync(tmp, out);
  }
  return out;
}

export interface Workload {
  pid: number;
  log: string;
  dir: string;
}

const started = new Set<number>();
const dirs = new Set<string>();

export function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `ferry-${tag}-`));
  dirs.add(d);
  return d;
}

export function startWorkload(argv: string[], tag = 'wl'): Workload {
  const dir = tempDir(tag);
  chmodSync(dir, 0o755); // workloads may run under another uid
  const log = join(dir, 'out.log');
  const pid = spawnDetached(argv.map((a) => a.replace('{dir}', dir)), { log, cwd: dir });
  started.add(pid);
  return { pid, log, dir };
}

/** Tracks a pid the test did not start itself but is responsible for (a restored process). */
export const adopt = (pid: number): void => void started.add(pid);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const alive = (pid: number): boolean => !isGone(pid);

/** Waits until one of pid's descriptors points at a target matching re (python3 may be a slow shim script first). */
export const waitFdTarget = (pid: number, re: RegExp, timeoutMs = 20_000): Promise<true> =>
  waitFor(`pid ${pid} to hold an fd like ${re}`, () => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return re.test(readlinkSync(`/proc/${pid}/fd/${fd}`));
        } catch {
          return false;
        }
      }) || undefined;
    } catch {
      return undefined;
    }
  }, timeoutMs);

export const procState = (pid: number): string => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] ?? '?';

/** Lines of a workload's log; throws with the log if the workload reported a failed self-check. */
export function logLines(w: Workload): string[] {
  const lines = existsSync(w.log) ? readFileSync(w.log, 'utf8').split('\n').filter(Boolean) : [];
  const bad = lines.find((l) => l.startsWith('FAIL'));
  if (bad) throw new Error(`workload ${w.pid} failed its own check: ${bad}\n${lines.slice(-10).join('\n')}`);
  return lines;
}

/** Highest "tick N" the workload has reported. */
export function lastTick(w: Workload): number {
  let t = -1;
  for (const l of logLines(w)) {
    const m = /^tick (\d+)/.exec(l);
    if (m) t = Math.max(t, Number(m[1]));
  }
  return t;
}

export const waitTick = (w: Workload, above: number, timeoutMs = 10_000): Promise<number> =>
  waitFor(`tick > ${above} from ${w.pid}`, () => {
    const t = lastTick(w);
    return t > above ? t : undefined;
  }, timeoutMs);

export const waitGone = (pid: number, timeoutMs = 10_000): Promise<boolean> => waitFor(`pid ${pid} to be reaped`, () => !existsSync(`/proc/${pid}`), timeoutMs);

export function cleanup(): void {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  started.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}


/**
 * Marks every descriptor this test process inherited (above stderr) close-on-exec, so workloads
 * started by shells (the workload harness uses plain `sh`, which cannot close high fds) do not
 * inherit e.g. a pipe of whatever launched vitest; the engine would rightly refuse that pipe.
 */
export function sealInheritedFds(): void {
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    try {
      sys('fcntl', fd, 2, 1); // F_SETFD FD_CLOEXEC
    } catch {
      // the directory fd of readdir itself, already closed
    }
  }
}

/** Runs fn and insists it throws a FerryError with this code; returns it. */
export async function expectFerryError(fn: () => unknown, code: string): Promise<FerryError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FerryError);
    expect((err as FerryError).code).toBe(code);
    return err as FerryError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}
