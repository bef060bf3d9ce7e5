// How a workload starts: a shell becomes `unshare`, whose forked child is PID 1 of new pid, uts,
// ipc and time namespaces; that child joins the workload's groups (the shim stays out, on every
// host alike), names its uts namespace and execs the workload, so the workload itself is PID 1.
import { getPriority } from 'node:os';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { spawnDetached } from './engine/process/detached.ts';
import { isDying, isGone, listChildren } from './engine/process/procfs.ts';

export interface ShimStart {
  name: string;
  command: string[];
  /** cgroup.procs files the workload joins before it execs. */
  joinFiles: string[];
  /** The workload's own network namespace, entered by the shim first (null: the host's). */
  netns: string | null;
  log: string;
  cwd?: string;
  env: Record<string, string>;
}

/** Starts the workload; resolves once it has exec'd (its pid and the shim's), or fails with why. */
export async function startInShim(o: ShimStart): Promise<{ shimPid: number; rootPid: number }> {
  const join = `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; `;
  const enterNet = o.netns ? `nsenter --net='${o.netns}' -- ` : '';
  // The agent may run at a raised priority (its unit's Nice=): the workload starts at nice 0.
  const agentNice = getPriority(0);
  const atNiceZero = agentNice !== 0 ? `nice -n ${-agentNice} ` : '';
  const script = `exec ${atNiceZero}${enterNet}unshare --pid --fork --uts --ipc --time -- /bin/sh -c '${join}hostname "$0" && exec "$@"' "$@"`;
  const shimPid = spawnDetached(['/bin/sh', '-c', script, 'ferry-shim', o.name, String(o.joinFiles.length), ...o.joinFiles, ...o.command], {
    log: o.log,
    ...(o.cwd ? { cwd: o.cwd } : {}),
    env: o.env,
  });
  return { shimPid, rootPid: await waitForExec(shimPid, o.command[0] ?? '') };
}

/** The shim's child once it has exec'd the workload (or its error, if it exited). */
async function waitForExec(shimPid: number, exe: string): Promise<number> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const child = isGone(shimPid) ? undefined : listChildren(shimPid)[0];
    if (child !== undefined) {
      // Until it execs, the child is still the naming shell (or unshare, before that). Its
      // cmdline reads empty in the middle of an exec (the new image has no arguments yet; under
      // load that lasts long enough to be seen) and while it exits after a failed one: it is the
      // workload once it shows arguments that are not the shell's, and is not on its way out.
      const cmdline = readCmdline(child);
      if (cmdline && !cmdline.includes('hostname "$0"') && !isDying(child)) return child;
    } else if (isGone(shimPid)) {
      throw new FerryError(ErrorCode.InvalidRequest, `workload exited at once: is "${exe}" an executable on this host?`);
    }
    await sleep(10);
  }
  throw new FerryError(ErrorCode.Timeout, `workload did not start within 5 s`);
}

/** /proc/PID/cmdline, or null once the process is gone. */
function readCmdline(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return null;
  }
}
