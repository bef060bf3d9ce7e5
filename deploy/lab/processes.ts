// Starts the lab's daemons inside its namespaces and ends them again, by pid only, and only
// after checking that the pid still is the process the lab started.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isGone } from '../../agent/engine/process/procfs.ts';

export interface StartedProcess {
  pid: number;
  /** A string that the process's command line contains, to recognise it later. */
  marker: string;
  log: string;
}

/** Starts `argv` inside network namespace `ns`, detached, with output to `log`. */
export function startInNamespace(ns: string, argv: string[], log: string, marker: string, env: NodeJS.ProcessEnv = {}): StartedProcess {
  const out = openSync(log, 'a');
  try {
    // nsenter joins only the network namespace and then execs: the daemon keeps the machine's
    // mount namespace (and so /sys/fs/cgroup, which `ip netns exec` would hide).
    const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', ...argv], {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, ...env },
    });
    if (child.pid === undefined) throw new Error(`could not start ${argv[0]} in ${ns}`);
    child.unref();
    return { pid: child.pid, marker, log };
  } finally {
    closeSync(out);
  }
}

export function cmdline(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return null;
  }
}

export const isRunning = (p: { pid: number; marker: string }): boolean => !isGone(p.pid) && (cmdline(p.pid)?.includes(p.marker) ?? false);

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
export async function stopProcess(p: { pid: number; marker: string }, graceMs = 3_000): Promise<void> {
  if (!isRunning(p)) return;
  process.kill(p.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (isGone(p.pid)) return;
    await sleep(50);
  }
  if (isRunning(p)) process.kill(p.pid, 'SIGKILL');
  while (!isGone(p.pid)) await sleep(20);
}

/** Set in the environment of everything the lab starts, so that `lab down` can find it after a crash. */
export const LAB_MEMBER_ENV = 'FERRY_LAB_MEMBER';

function isLabMember(pid: number, lab: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`${LAB_MEMBER_ENV}=${lab}`);
  } catch {
    return false;
  }
}

/**
 * Pids of the processes that this lab started (they carry its marker) and that still run inside
 * one of its namespaces. A shell or tool that merely entered a lab namespace is not the lab's
 * to end.
 */
export function labProcessesInNamespaces(lab: string, nsNames: string[]): number[] {
  const inodes = new Set<number>();
  for (const n of nsNames) {
    try {
      inodes.add(statSync(`/run/netns/${n}`).ino);
    } catch {
      // already gone
    }
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (inodes.has(statSync(`/proc/${entry}/ns/net`).ino) && isLabMember(Number(entry), lab)) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return pids;
}

export async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const pid of pids) while (!isGone(pid)) await sleep(20);
}
