// A restored tree waiting for the commit, held so that it outlives the agent: every process is
// built up to its registers, then its cgroup (v2) is frozen and ptrace lets go. A frozen task
// runs no user code (the freezer traps it on its way back to user mode), so the tree cannot run
// before the commit, yet it no longer dies with the agent (PTRACE_O_EXITKILL applies only while
// traced): a restarted agent can still thaw it after a commit, or kill it on rollback, from the
// plain record.
import type { Image, InetSocketImage } from '../../../shared/image-format.ts';
import { signalQuiet, thawCgroup } from './freeze.ts';
import { withTheirFd } from '../sockets/classify.ts';
import { activateConnection } from '../sockets/restore.ts';

export interface HeldTree {
  /** Host pids of the image's processes, in the image's order. */
  pids: number[];
  /** The cgroup v2 directory (absolute) that holds them, frozen. */
  cgroup: string;
}

/** The tree runs. Never throws. */
export const thawHeldTree = (h: HeldTree): void => thawCgroup(h.cgroup);

/** Rollback: the held tree dies. Never throws. */
export function killHeldTree(h: HeldTree): void {
  signalQuiet([...h.pids].reverse(), 9);
  thawHeldTree(h);
}

/**
 * TCP connections of a held tree leave repair mode (a window probe goes out, never-sent bytes
 * follow), found from outside through the image: what a restarted agent does, having lost its
 * own duplicates of them. Each shared connection once.
 */
export function activateHeldConnections(img: Image, h: HeldTree): number {
  const done = new Set<number>();
  img.processes.forEach((p, i) => {
    const pid = h.pids[i];
    if (pid === undefined) return;
    for (const f of p.fds) {
      if (f.shared === undefined || f.dupOf !== undefined || done.has(f.shared)) continue;
      const sh = img.shared[f.shared];
      if (sh?.kind !== 'inet' || !(sh as InetSocketImage).tcp) continue;
      done.add(f.shared);
      withTheirFd(pid, f.fd, (mine) => activateConnection(mine, sh as InetSocketImage));
    }
  });
  return done.size;
}
