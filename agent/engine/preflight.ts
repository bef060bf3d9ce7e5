// Finds everything the engine cannot carry before anything is frozen, so a refused checkpoint
// leaves the workload untouched. Reads /proc only.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { fdTarget, listChildren, listFds, readMaps, readStatus } from './procfs.ts';

export interface Problem {
  pid: number;
  /** "fd 5", "mapping 7f..-7f..", "process" */
  where: string;
  kind: string;
  detail: string;
}

const SUPPORTED_CHR = /^\/dev\/(null|zero|full|random|urandom|tty\d*|pts\/\d+)$/;

export function fdKind(pid: number, fd: number): { kind: 'file' | 'chr' | 'dir' } | { unsupported: string } {
  const t = fdTarget(pid, fd);
  if (t.endsWith(' (deleted)')) return { unsupported: 'deleted file' };
  if (t.startsWith('socket:')) return { unsupported: 'socket' };
  if (t.startsWith('pipe:')) return { unsupported: 'pipe' };
  const anon = /^anon_inode:\[?([^\]]+)\]?$/.exec(t);
  if (anon) return { unsupported: anon[1] ?? 'anon inode' };
  if (!t.startsWith('/')) return { unsupported: t };
  let st;
  try {
    st = statSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return { unsupported: 'unreachable file' };
  }
  if (st.isFile()) return { kind: 'file' };
  if (st.isDirectory()) return { kind: 'dir' };
  if (st.isCharacterDevice() && SUPPORTED_CHR.test(t)) return { kind: 'chr' };
  if (st.isFIFO()) return { unsupported: 'fifo' };
  return { unsupported: `device ${t}` };
}

const SPECIAL = new Set(['[heap]', '[stack]', '[vdso]', '[vvar]', '[vvar_vclock]', '[vsyscall]', '']);

function nsOf(pid: number, ns: string): string {
  return readlinkSync(`/proc/${pid}/ns/${ns}`);
}

/** Every problem in one process; an empty list means the engine can carry it. */
export function preflightProcess(pid: number, opts: { allowChildren?: boolean } = {}): Problem[] {
  const out: Problem[] = [];
  const status = readStatus(pid);
  const add = (where: string, kind: string, detail: string) => out.push({ pid, where, kind, detail });
  if (status.get('TracerPid') !== '0') add('process', 'ptraced', `already traced by pid ${status.get('TracerPid')}`);
  if (status.get('Seccomp') !== '0') add('process', 'seccomp', `seccomp mode ${status.get('Seccomp')}`);
  if (!opts.allowChildren) {
    const kids = listChildren(pid);
    if (kids.length > 0) add('process', 'child process', `has children ${kids.join(',')} (process trees are not supported yet)`);
  }
  for (const ns of ['pid', 'uts', 'ipc', 'time', 'net', 'mnt', 'user']) {
    try {
      if (nsOf(pid, ns) !== nsOf(process.pid, ns)) add('process', `${ns} namespace`, `runs in its own ${ns} namespace`);
    } catch {
      // namespace kind not present on this kernel
    }
  }
  try {
    const timers = readFileSync(`/proc/${pid}/timers`, 'utf8').match(/^ID: (\d+)/gm) ?? [];
    if (timers.length > 0) add('process', 'POSIX timer', `${timers.length} timer(s) from timer_create`);
  } catch {
    // kernel without CONFIG_POSIX_TIMERS/CHECKPOINT_RESTORE: nothing to see
  }
  for (const fd of listFds(pid)) {
    const k = fdKind(pid, fd);
    if ('unsupported' in k) add(`fd ${fd}`, k.unsupported, fdTarget(pid, fd));
  }
  for (const m of readMaps(pid)) {
    const where = `mapping ${m.start.toString(16)}-${m.end.toString(16)}`;
    if (m.path.startsWith('/SYSV')) add(where, 'SysV shared memory', m.path);
    else if (m.path.startsWith('/memfd:')) add(where, 'memfd mapping', m.path);
    else if (m.path.endsWith(' (deleted)')) add(where, 'deleted file mapping', m.path);
    else if (m.perms[3] === 's' && (m.inode === 0 || m.path.startsWith('/dev/zero'))) add(where, 'shared anonymous memory', m.path || '[anon shared]');
    else if (m.path.startsWith('[') && !SPECIAL.has(m.path) && !m.path.startsWith('[anon:') && !m.path.startsWith('[stack:')) add(where, 'special mapping', m.path);
  }
  return out;
}

/** Throws Unsupported naming the first problem (all of them in details); NotFound if the pid is gone. */
export function preflight(pids: readonly number[], opts: { allowChildren?: boolean } = {}): void {
  const problems: Problem[] = [];
  for (const pid of pids) {
    try {
      problems.push(...preflightProcess(pid, opts));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError(ErrorCode.NotFound, `process ${pid} does not exist`, { details: { pid } });
      throw err;
    }
  }
  const first = problems[0];
  if (first) {
    throw new FerryError(ErrorCode.Unsupported, `pid ${first.pid} ${first.where}: ${first.kind} is not supported (${first.detail})`, {
      details: { pid: first.pid, where: first.where, kind: first.kind, problems },
    });
  }
}
