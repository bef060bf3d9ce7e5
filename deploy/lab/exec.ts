// Runs the system tools the lab drives (ip, nsenter), with errors that say what failed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ErrorCode, FerryError } from '../../shared/errors.ts';

const execFileP = promisify(execFile);

export async function run(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): Promise<string> {
  try {
    const child = execFileP(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
    if (opts.input !== undefined) child.child.stdin!.end(opts.input);
    const { stdout } = await child;
    return stdout;
  } catch (err) {
    if (opts.allowFail) return '';
    const e = err as { stderr?: string; message: string; code?: string };
    if (e.code === 'ENOENT') throw new FerryError(ErrorCode.Lab, `${cmd} is not installed: run deploy/bootstrap.sh`);
    throw new FerryError(ErrorCode.Lab, `${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
}

/** `ip` inside a namespace (-n), or in the caller's namespace when ns is null. */
export const ip = (ns: string | null, ...args: string[]) => run('ip', ns ? ['-n', ns, ...args] : args);
export const ipMaybe = (ns: string | null, ...args: string[]) => run('ip', ns ? ['-n', ns, ...args] : args, { allowFail: true });
