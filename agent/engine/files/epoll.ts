// What an epoll instance watches. fdinfo names each registration by the fd number it was made
// through; that number may since have been closed or reused for another file while the
// registered file lives on through another fd. kcmp(KCMP_EPOLL_TFD) tells which fd of the
// process holds each registered file now. Restore registers each again (register()).
import { readFileSync } from 'node:fs';
import { type FdImage, fromHex, toHex } from '../../../shared/image-format.ts';
import { sys } from '../../ffi/syscalls.ts';
import { type HuskProcess, OFF_ARGS } from '../process/husk-core.ts';
import { listFds } from '../process/procfs.ts';

const KCMP_EPOLL_TFD = 7;

export type EpollEntry = NonNullable<FdImage['epoll']>[number];

/** Whether fd `fd` of pid is the file registered in epoll `efd` as the `toff`-th entry with number `tfd`. */
function holds(pid: number, fd: number, efd: number, tfd: number, toff: number): boolean {
  const slot = Buffer.alloc(16); // struct kcmp_epoll_slot { u32 efd, tfd; u64 toff }
  slot.writeUInt32LE(efd, 0);
  slot.writeUInt32LE(tfd, 4);
  slot.writeBigUInt64LE(BigInt(toff), 8);
  try {
    return sys('kcmp', pid, pid, KCMP_EPOLL_TFD, fd, slot) === 0;
  } catch {
    return false; // EBADF: fd closed
  }
}

/**
 * Every registration of epoll `efd` in pid. `via` is set when the number it was made through
 * no longer holds the file: the fd that does. `lost` lists registrations whose file this
 * process no longer holds at all (another process does).
 */
export function epollEntries(pid: number, efd: number): { entries: EpollEntry[]; lost: number[] } {
  const raw = readFileSync(`/proc/${pid}/fdinfo/${efd}`, 'utf8');
  const seen = new Map<number, number>();
  const entries: EpollEntry[] = [];
  const lost: number[] = [];
  let fds: number[] | null = null;
  for (const m of raw.matchAll(/^tfd:\s*(\d+) events:\s*([0-9a-f]+) data:\s*([0-9a-f]+)/gm)) {
    const tfd = Number(m[1]);
    const toff = seen.get(tfd) ?? 0;
    seen.set(tfd, toff + 1);
    const e: EpollEntry = { tfd, events: Number.parseInt(m[2]!, 16), data: toHex(BigInt(`0x${m[3]}`)) };
    if (!holds(pid, tfd, efd, tfd, toff)) {
      fds ??= listFds(pid);
      const via = fds.find((fd) => holds(pid, fd, efd, tfd, toff));
      if (via === undefined) lost.push(tfd);
      else e.via = via;
    }
    entries.push(e);
  }
  return { entries, lost };
}

/**
 * One epoll registration under its own key (file, fd number), made in the husk once every fd
 * is in place. When that number now holds another file (or nothing), the registered file is
 * put there just for the epoll_ctl.
 */
export function register(h: HuskProcess, efd: number, it: EpollEntry, fds: readonly FdImage[]): void {
  const ev = Buffer.alloc(12); // struct epoll_event is packed on x86-64
  ev.writeUInt32LE(it.events >>> 0, 0);
  ev.writeBigUInt64LE(fromHex(it.data), 4);
  const add = () => h.inj(h.pid, 'epoll_ctl', [efd, 1, it.tfd, h.put(OFF_ARGS, ev)]);
  if (it.via === undefined) {
    add();
    return;
  }
  const occupant = fds.find((g) => g.fd === it.tfd);
  const parked = occupant ? Number(h.inj(h.pid, 'fcntl', [it.tfd, 1030, 0])) : -1; // F_DUPFD_CLOEXEC
  h.inj(h.pid, 'dup3', [it.via, it.tfd, 0]);
  add();
  if (occupant) {
    h.inj(h.pid, 'dup3', [parked, it.tfd, occupant.cloexec ? 0o2000000 : 0]);
    h.inj(h.pid, 'close', [parked]);
  } else h.inj(h.pid, 'close', [it.tfd]);
}
