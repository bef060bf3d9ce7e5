// Runs the network tools (ip, nft, sysctl through sh) inside a network namespace given as a
// file (/run/netns/NAME or /proc/PID/ns/net): nsenter joins only that namespace and execs, so
// the agent itself never moves. Errors say which command failed and why.
import { spawn } from 'node:child_process';
import { ErrorCode, FerryError } from '../../shared/errors.ts';

export interface RunOptions {
  /** Written to the command's stdin (e.g. `ip -batch -`, `nft -j -f -`). */
  input?: string;
  /** A failure returns what the command printed instead of throwing. */
  allowFail?: boolean;
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(new FerryError(ErrorCode.Unavailable, e.code === 'ENOENT' ? `${cmd} is not installed: run deploy/bootstrap.sh` : `${cmd}: ${e.message}`)),
    );
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0 || opts.allowFail) return resolve(stdout);
      const why = Buffer.concat(err).toString('utf8').trim() || `exit code ${code}`;
      reject(new FerryError(ErrorCode.Syscall, `${cmd} ${args.join(' ')}: ${why}`, { details: { call: cmd, args: [...args], stderr: why } }));
    });
    child.stdin.on('error', () => undefined); // a command that exits early closes its stdin
    child.stdin.end(opts.input ?? '');
  });
}

/** `cmd args` inside the namespace at nsPath; in the agent's own namespace when nsPath is null. */
export const runIn = (nsPath: string | null, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> =>
  nsPath ? run('nsenter', [`--net=${nsPath}`, '--', cmd, ...args], opts) : run(cmd, args, opts);

/**
 * Several `ip` commands in one process (`ip -batch -`), one per line; `force` carries on past
 * failing lines; `inet6` runs them as `ip -6` (a batch line cannot carry options).
 */
export const ipBatch = (nsPath: string | null, lines: readonly string[], o: { force?: boolean; inet6?: boolean } = {}): Promise<string> =>
  lines.length === 0
    ? Promise.resolve('')
    : runIn(nsPath, 'ip', [...(o.force ? ['-force'] : []), ...(o.inet6 ? ['-6'] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });

/** `ip -j ...` parsed. */
export async function ipJson<T>(nsPath: string | null, args: readonly string[]): Promise<T[]> {
  const out = await runIn(nsPath, 'ip', ['-j', ...args]);
  return out.trim() ? (JSON.parse(out) as T[]) : [];
}

export const netnsPath = (name: string): string => `/run/netns/${name}`;
