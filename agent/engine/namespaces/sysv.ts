// SysV semaphores and message queues of the host's IPC namespace that a tree uses. They belong
// to the namespace, not to the process: a checkpoint does not carry them, nor a process's
// SEM_UNDO adjustments (which the original's death applies at once), so a tree that uses them
// is refused. A tree with an IPC namespace of its own is refused or checked as a whole
// (preflight, namespaces.ts). SysV shared memory shows in the maps and is refused there.
import { readFileSync } from 'node:fs';
import { sys } from '../../ffi/syscalls.ts';

export interface SysvUse {
  pid: number;
  kind: 'SysV semaphore set' | 'SysV message queue';
  id: number;
  key: string;
  /** What ties it to the process, as the kernel records it. */
  how: string;
}

const SEM_GETPID = 11;
const IPC_RMID = 0;

/** Rows of a /proc/sysvipc table as seen from the agent's own IPC namespace. */
function rows(table: 'sem' | 'msg'): string[][] {
  return readFileSync(`/proc/sysvipc/${table}`, 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((r) => r.length > 6);
}

const hexKey = (key: string): string => `0x${(Number(key) >>> 0).toString(16).padStart(8, '0')}`;

/**
 * Objects of the agent's IPC namespace the processes last operated on: the kernel keeps the
 * last sender and receiver of a queue and the last pid to change each semaphore. An object the
 * tree created or used but someone else touched since leaves no trace and is not found.
 */
export function sysvUsedBy(pids: readonly number[]): SysvUse[] {
  const tree = new Set(pids);
  const out: SysvUse[] = [];
  for (const [key = '', id = '', , , , lspid = '', lrpid = ''] of rows('msg')) {
    const found = [
      [Number(lspid), 'sent its last message'],
      [Number(lrpid), 'received its last message'],
    ] as const;
    const hit = found.find(([pid]) => tree.has(pid));
    if (hit) out.push({ pid: hit[0], kind: 'SysV message queue', id: Number(id), key: hexKey(key), how: `this process ${hit[1]}` });
  }
  for (const [key = '', id = '', , nsems = '0'] of rows('sem')) {
    for (let i = 0; i < Number(nsems); i++) {
      let pid: number;
      try {
        pid = sys('semctl', Number(id), i, SEM_GETPID, 0);
      } catch {
        break; // removed meanwhile
      }
      if (!tree.has(pid)) continue;
      out.push({ pid, kind: 'SysV semaphore set', id: Number(id), key: hexKey(key), how: `this process changed semaphore ${i} last` });
      break;
    }
  }
  return out;
}

/** Removes objects found by sysvUsedBy (test cleanup: a killed program cannot remove its own). */
export function removeSysv(uses: readonly SysvUse[]): void {
  for (const u of uses) {
    try {
      if (u.kind === 'SysV semaphore set') sys('semctl', u.id, 0, IPC_RMID, 0);
      else sys('msgctl', u.id, IPC_RMID, 0);
    } catch {
      // already gone
    }
  }
}
