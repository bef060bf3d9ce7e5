// Where cgroup v2 is mounted with the freezer the engine needs: asked by the engine (freeze, hold),
// the cgroup layout and the migration steps alike.
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';

let found: string | null = null;

/**
 * The cgroup2 mount the engine freezes in, when the kernel offers cgroup.freeze there. Found once:
 * a freeze asks for it, and the probe (reading every mount, making and dropping a group) costs
 * milliseconds inside the downtime.
 */
export function cgroup2Root(): string | null {
  if (found !== null && existsSync(`${found}/cgroup.procs`)) return found;
  found = probeCgroup2Root();
  return found;
}

function probeCgroup2Root(): string | null {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n');
  for (const l of mounts) {
    const [, dir, fstype] = l.split(' ');
    if (fstype !== 'cgroup2' || !dir) continue;
    // cgroup.freeze exists only in non-root groups: look at one, or make and drop one.
    const probe = `${dir}/ferry-probe-${process.pid}`;
    try {
      mkdirSync(probe);
      const ok = existsSync(`${probe}/cgroup.freeze`);
      rmdirSync(probe);
      if (ok) return dir;
    } catch {
      continue;
    }
  }
  return null;
}
