// Real clients in the lab's client namespace (test/integration/clients), started in the
// background and read the way a user would: their own status and their final report.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { LabStatus } from '../../../deploy/lab/lab.ts';
import { REPO, ferryJson } from './cli.ts';

const execFileP = promisify(execFile);

export async function clientNamespace(env: NodeJS.ProcessEnv): Promise<string> {
  return (await ferryJson<LabStatus>(['lab', 'status'], env)).clientNamespace;
}

/** A command run to completion inside the client namespace. */
export async function inClient(ns: string, argv: string[]): Promise<string> {
  const { stdout } = await execFileP('ip', ['netns', 'exec', ns, ...argv], { maxBuffer: 64 << 20 });
  return stdout.trim();
}

export class LabClient<T> {
  readonly #child: ChildProcess;
  readonly #done: Promise<T>;
  readonly statusFile: string;

  constructor(ns: string, script: string, args: string[], opts: { statusFile?: boolean } = {}) {
    this.statusFile = path.join(mkdtempSync(path.join(tmpdir(), 'ferry-client-')), 'status.json');
    const argv = ['netns', 'exec', ns, process.execPath, '--import', 'tsx', path.join(REPO, 'test/integration/clients', script), ...args];
    if (opts.statusFile) argv.push(this.statusFile);
    // `ip netns exec` execs the program, so the child's pid is the client's own.
    this.#child = spawn('ip', argv, { stdio: ['ignore', 'pipe', 'inherit'], cwd: REPO });
    let out = '';
    this.#child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    this.#done = new Promise((resolve, reject) => {
      this.#child.on('exit', (code) => {
        const line = out.trim().split('\n').at(-1);
        if (!line) reject(new Error(`${script} exited ${code} without a report`));
        else resolve(JSON.parse(line) as T);
      });
    });
  }

  /** Its latest status (statusFile clients), or null before the first one. */
  status(): T | null {
    try {
      return JSON.parse(readFileSync(this.statusFile, 'utf8')) as T;
    } catch {
      return null;
    }
  }

  /** Resolves once `pred` holds for its status. */
  async until(pred: (s: T) => boolean, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.status();
      if (s && pred(s)) return s;
      if (Date.now() > deadline) throw new Error(`client status never matched: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Its final report once it ends by itself. */
  done(): Promise<T> {
    return this.#done;
  }

  /** Asks it to stop (SIGTERM) and returns its final report. */
  stop(): Promise<T> {
    this.#child.kill('SIGTERM');
    return this.#done;
  }
}
