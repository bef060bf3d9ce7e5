// Anon-inode descriptors (their state is read from fdinfo by collect.ts): eventfd, timerfd,
// signalfd, pidfd and epoll instances are made anew in the husk with their state.
import { type FdImage, fromHex } from '../../../shared/image-format.ts';
import { type HuskProcess, OFF_ARGS, agentWrite } from '../process/husk-core.ts';

export const ANON_FD_KINDS = new Set(['eventfd', 'timerfd', 'signalfd', 'epoll', 'pidfd']);

/** eventfd, timerfd, signalfd and epoll instances are made anew with their state. */
export function createAnonFd(h: HuskProcess, f: FdImage): void {
  const nb = f.flags & 0o4000;
  let tmp: bigint;
  switch (f.kind) {
    case 'eventfd':
      tmp = h.inj(h.pid, 'eventfd2', [0, nb | (f.eventfd?.semaphore ? 1 : 0)]);
      break;
    case 'timerfd':
      tmp = h.inj(h.pid, 'timerfd_create', [f.timerfd?.clockid ?? 1, nb]);
      break;
    case 'signalfd': {
      const m = Buffer.alloc(8);
      m.writeBigUInt64LE(fromHex(f.signalfd?.mask ?? '0x0'), 0);
      tmp = h.inj(h.pid, 'signalfd4', [-1, h.put(OFF_ARGS, m), 8, nb]);
      break;
    }
    case 'pidfd':
      // The process it names is a husk already: every husk of the tree exists before any process is built.
      tmp = h.inj(h.pid, 'pidfd_open', [f.pidfd?.pid ?? 0, nb]);
      break;
    default:
      tmp = h.inj(h.pid, 'epoll_create1', [0]);
  }
  if (Number(tmp) !== f.fd) {
    h.inj(h.pid, 'dup3', [tmp, f.fd, f.cloexec ? 0o2000000 : 0]);
    h.inj(h.pid, 'close', [tmp]);
  } else if (f.cloexec) h.inj(h.pid, 'fcntl', [f.fd, 2, 1]);
  if (f.eventfd && fromHex(f.eventfd.count) > 0n) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(fromHex(f.eventfd.count), 0);
    agentWrite(h.pid, f.fd, b);
  }
  const t = f.timerfd;
  const idle = (v: [number, number]) => v[0] === 0 && v[1] === 0;
  // An expired timer shows value 0 until it is read; it must still fire (at once) and keep its interval.
  if (t && (!idle(t.value) || !idle(t.interval) || t.ticks > 0)) {
    const value = idle(t.value) ? [0, 1] : t.value;
    const its = Buffer.alloc(32);
    [t.interval[0], t.interval[1], value[0]!, value[1]!].forEach((v, i) => its.writeBigInt64LE(BigInt(v), i * 8));
    h.inj(h.pid, 'timerfd_settime', [f.fd, 0, h.put(OFF_ARGS, its), 0]);
  }
}
