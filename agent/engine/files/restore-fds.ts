// Every fd of a process back in place in its husk: shared descriptions dup'ed from where the
// root parked them (restore-shared.ts), eventfd/timerfd/signalfd/pidfd/epoll made anew
// (anon-fds.ts), files reopened at their offsets; then epoll registrations (epoll.ts) and locks
// (locks.ts), which name fds and descriptions that must all exist first.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { FdImage } from '../../../shared/image-format.ts';
import { type HuskProcess, OFF_ARGS } from '../process/husk-core.ts';
import { ANON_FD_KINDS, createAnonFd } from './anon-fds.ts';
import { register } from './epoll.ts';
import { LeaseGuard } from './lock-sharing.ts';
import { lockCall, lockNotTaken } from './locks.ts';
import { openPath } from './restore-shared.ts';

/** `leases`: one guard for a whole restore, so that /proc/locks is read once (see LeaseGuard). */
export function restoreFds(h: HuskProcess, fds: readonly FdImage[], leases = new LeaseGuard()): void {
  for (const f of fds) {
    const cloexec = f.cloexec ? 0o2000000 : 0;
    if (f.shared !== undefined && f.dupOf === undefined) {
      const slot = h.parked[f.shared];
      if (!slot) throw new FerryError(ErrorCode.BadImage, `fd ${f.fd} of pid ${h.pid} names shared description ${f.shared}, which the image lacks`);
      const end = f.end ?? ((f.flags & 3) === 0 ? 0 : 1);
      h.inj(h.pid, 'dup3', [end === 2 && slot.rw !== undefined ? slot.rw : end === 0 ? slot.r : slot.w, f.fd, cloexec]);
      continue;
    }
    if (f.dupOf === undefined && ANON_FD_KINDS.has(f.kind)) {
      createAnonFd(h, f);
      continue;
    }
    if (f.dupOf !== undefined) {
      h.inj(h.pid, 'dup3', [f.dupOf, f.fd, cloexec]);
      continue;
    }
    const flags = (f.flags & ~(0o100 | 0o200 | 0o1000)) | (f.kind === 'dir' ? 0o200000 : 0);
    if (f.content === undefined) leases.check(h.pid, `fd ${f.fd}`, f.path, flags);
    let tmp: bigint;
    try {
      tmp = h.inj(h.pid, 'open', [h.putStr(openPath(h, f.path, f.content)), flags, 0]);
    } catch (err) {
      throw new FerryError(ErrorCode.NotFound, `cannot reopen fd ${f.fd} of pid ${h.pid}: ${f.path}`, { details: { pid: h.pid, fd: f.fd, path: f.path }, cause: err });
    }
    if (Number(tmp) !== f.fd) {
      h.inj(h.pid, 'dup3', [tmp, f.fd, cloexec]);
      h.inj(h.pid, 'close', [tmp]);
    } else if (cloexec) h.inj(h.pid, 'fcntl', [f.fd, 2, 1]); // F_SETFD FD_CLOEXEC
    if (f.kind === 'file' && f.pos > 0) h.inj(h.pid, 'lseek', [f.fd, f.pos, 0]);
  }
  if (h.parkBase > 0) h.inj(h.pid, 'close_range', [h.parkBase, 0xffffffff, 0]);
  // Registrations name fd numbers, so they go in once every fd is in place.
  for (const f of fds) {
    if (f.kind !== 'epoll' || f.dupOf !== undefined) continue;
    for (const it of f.epoll ?? []) register(h, f.fd, it, fds);
  }
  // Locks last: a write lease needs its description to be the file's only opener (parked duplicates closed),
  // and register() closes fds, which would drop the process's POSIX locks on their files.
  for (const f of fds) {
    if (f.dupOf !== undefined) continue;
    for (const l of f.locks ?? []) {
      const [call, args] = lockCall(f.fd, l, (b) => h.put(OFF_ARGS, b));
      try {
        h.inj(h.pid, call, args);
      } catch (err) {
        throw lockNotTaken(h.pid, f, l, err);
      }
    }
  }
}
