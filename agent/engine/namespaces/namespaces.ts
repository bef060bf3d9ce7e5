// Containers: a tree whose root is pid 1 of its own pid namespace. Ids inside the namespace are
// what the workload sees and what the image keeps; the clocks it sees are kept so a restore on
// any host can set time-namespace offsets that make them continue without a jump.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { readInIpcNamespace } from '../../ffi/netns-thread.ts';
import { sys } from '../../ffi/syscalls.ts';
import { vanished } from '../process/procfs.ts';

export const CLOCK_MONOTONIC = 1;
export const CLOCK_BOOTTIME = 7;

export function clockNs(clock: number): bigint {
  const ts = Buffer.alloc(16);
  sys('clock_gettime', clock, ts);
  return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
}

const nsOf = (pid: number | 'self', ns: string): string => readlinkSync(`/proc/${pid}/ns/${ns}`);

/** NSpid of a task: its ids from the host's namespace down to its own. */
export function nsIds(pid: number, tid = pid): number[] {
  const line = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/^NSpid:\s*(.*)$/m)?.[1];
  return (line ?? String(tid)).trim().split(/\s+/).map(Number);
}

/** Whether the tree is a container the engine can carry; throws Unsupported when it is half one. */
export function isContainer(root: number, pids: readonly number[]): boolean {
  if (nsOf(root, 'pid_for_children') === nsOf('self', 'pid') && nsOf(root, 'pid') === nsOf('self', 'pid')) return false;
  const ids = nsIds(root);
  if (ids.length !== 2 || ids[1] !== 1)
    throw new FerryError(ErrorCode.Unsupported, `pid ${root} process: its pid namespace is not its own (ns pids ${ids.join(' ')}); checkpoint the namespace's init`, {
      details: { pid: root, where: 'process', kind: 'pid namespace' },
    });
  const ipc = nsOf(root, 'ipc') !== nsOf('self', 'ipc') ? sysvObjects(root) : [];
  if (ipc.length > 0)
    throw new FerryError(
      ErrorCode.Unsupported,
      `pid ${root} process: SysV IPC objects is not supported (${ipc.length} in the container's IPC namespace: ${ipc.slice(0, 3).join(', ')}${ipc.length > 3 ? ', ...' : ''}; they are not carried); comm ${commOf(root)}`,
      { details: { pid: root, where: 'process', kind: 'SysV IPC objects', objects: ipc } },
    );
  for (const pid of pids) {
    try {
      // A network namespace of its own is the caller's to rebuild (agent/net); preflight checks the tree shares one.
      if (nsOf(pid, 'user') !== nsOf('self', 'user'))
        throw new FerryError(ErrorCode.Unsupported, `pid ${pid} process: user namespace is not supported`, { details: { pid, where: 'process', kind: 'user namespace' } });
      if (nsOf(pid, 'pid') !== nsOf(root, 'pid'))
        throw new FerryError(ErrorCode.Unsupported, `pid ${pid} process: nested pid namespace is not supported`, { details: { pid, where: 'process', kind: 'pid namespace' } });
    } catch (err) {
      // A short-lived child that exited meanwhile: the freeze lists the tree again.
      if (!vanished(err, pid)) throw err;
    }
  }
  return true;
}

/**
 * SysV IPC objects live in the container's ipc namespace, which restore creates empty: refuse
 * them. /proc/sysvipc shows the reader's namespace, so the reading happens inside it (a thread
 * of the agent's, agent/ffi/netns-thread.ts).
 * Each as "semaphore set 3 (key 0x...)".
 */
export function sysvObjects(root: number): string[] {
  let text: string;
  try {
    text = readInIpcNamespace(`/proc/${root}/ns/ipc`, ['/proc/sysvipc/shm', '/proc/sysvipc/sem', '/proc/sysvipc/msg']);
  } catch (err) {
    if (vanished(err, root)) return [];
    throw err;
  }
  const names: Record<string, string> = { shmid: 'shared memory segment', semid: 'semaphore set', msqid: 'message queue' };
  let kind = 'object';
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[0] === 'key') kind = names[cols[1] ?? ''] ?? 'object';
    else if (/^-?\d+$/.test(cols[0] ?? '') && /^\d+$/.test(cols[1] ?? '')) out.push(`${kind} ${cols[1]} (key 0x${(Number(cols[0]) >>> 0).toString(16)})`);
  }
  return out;
}

export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Host pid -> pid inside the container, for every process and thread of the tree. */
export function nsIdMap(pids: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pids) {
    for (const t of readdirSync(`/proc/${pid}/task`).map(Number)) {
      const ids = nsIds(pid, t);
      m.set(t, ids[ids.length - 1]!);
    }
  }
  return m;
}

/** The container's clocks now: host clock plus its time namespace's offsets. */
export function containerClocks(root: number): { monotonicNs: bigint; boottimeNs: bigint } {
  const off = { monotonic: 0n, boottime: 0n };
  try {
    for (const l of readFileSync(`/proc/${root}/timens_offsets`, 'utf8').split('\n')) {
      const [name, s, ns] = l.trim().split(/\s+/);
      if (name === 'monotonic' || name === 'boottime') off[name] = BigInt(s ?? 0) * 1_000_000_000n + BigInt(ns ?? 0);
    }
  } catch {
    // no time namespaces on this kernel: offsets are zero
  }
  return { monotonicNs: clockNs(CLOCK_MONOTONIC) + off.monotonic, boottimeNs: clockNs(CLOCK_BOOTTIME) + off.boottime };
}
