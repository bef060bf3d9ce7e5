// The guardian: one small process per agent (or CLI) that outlives it and, when it dies, runs the
// undo script of every freeze still armed, so an abandoned checkpoint leaves its workload
// running. One process for the agent's whole life, started before the first freeze needs it: a
// fork of the agent costs ~10 ms, which a freeze must not pay inside the workload's downtime.
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDetached } from './detached.ts';

let running: { pid: number; dir: string } | null = null;
let swept = false;

const DIR_PREFIX = 'ferry-guard-';

const alive = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('ferry-guardian');
  } catch {
    return false;
  }
};

/**
 * Directories of guardians that are gone together with their owner (both killed at once, as a
 * lab's teardown does): nothing can run their scripts any more, and nobody else removes them.
 * One whose owner or guardian still lives is left alone, whoever it belongs to.
 */
function sweepAbandoned(): void {
  let names: string[];
  try {
    names = readdirSync(tmpdir()).filter((n) => n.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  if (names.length === 0) return;
  const cmdlines: string[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      cmdlines.push(readFileSync(`/proc/${p}/cmdline`, 'utf8'));
    } catch {
      // exited meanwhile
    }
  }
  for (const n of names) {
    const dir = join(tmpdir(), n);
    let owner: number;
    try {
      owner = Number(/--pid=(\d+)/.exec(readFileSync(join(dir, 'guardian.sh'), 'utf8'))?.[1] ?? NaN);
    } catch {
      continue; // not a guardian's directory (yet): left alone
    }
    if (!Number.isInteger(owner) || existsSync(`/proc/${owner}`)) continue;
    if (cmdlines.some((c) => c.includes(dir))) continue;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts this process's guardian if it does not run (cheap when it does). Returns its directory. */
export function ensureGuardian(): string {
  if (running && alive(running.pid)) return running.dir;
  if (!swept) {
    swept = true;
    sweepAbandoned();
  }
  // A fresh directory of its own (mkdtemp: 0700, a name nobody could have made first): the
  // guardian, as root, runs the undo scripts it finds there.
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const script = join(dir, 'guardian.sh');
  // tail --pid waits for the owner without a fork per poll; then every armed freeze is undone.
  writeFileSync(
    script,
    [
      `tail --pid=${process.pid} -s 0.05 -f /dev/null`,
      `for m in '${dir}'/*.armed; do [ -e "$m" ] && . "\${m%.armed}.undo"; done`,
      `rm -rf '${dir}'`,
    ].join('\n') + '\n',
  );
  const pid = spawnDetached(['/bin/sh', script, 'ferry-guardian']);
  running = { pid, dir };
  return dir;
}

/** One freeze's entry with the guardian: its undo script, armed or not. */
export class GuardEntry {
  readonly #base: string;

  constructor(name: string) {
    this.#base = join(ensureGuardian(), name);
  }

  /** The script that thaws the workload, replaced atomically (the guardian may read it at any time). */
  writeUndo(lines: readonly string[]): void {
    writeFileSync(`${this.#base}.undo.tmp`, lines.join('\n') + '\n');
    renameSync(`${this.#base}.undo.tmp`, `${this.#base}.undo`);
  }

  arm(): void {
    writeFileSync(`${this.#base}.armed`, '');
  }

  /** The agent's death no longer undoes this freeze. */
  disarm(): void {
    rmSync(`${this.#base}.armed`, { force: true });
  }

  get armed(): boolean {
    return existsSync(`${this.#base}.armed`);
  }

  remove(): void {
    this.disarm();
    rmSync(`${this.#base}.undo`, { force: true });
  }
}
