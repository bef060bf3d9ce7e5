// The benchmarks' way to run the ferry CLI against their lab: its exit code and output, never a throw.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export type FerryRun = (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** `ferry ARGS` with this environment (FERRY_LAB names the lab). */
export function ferryCli(env: NodeJS.ProcessEnv): FerryRun {
  return async (args) => {
    try {
      const r = await execFileP(process.execPath, [path.join(REPO, 'bin/ferry.js'), ...args], { env, maxBuffer: 64 << 20 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };
}
