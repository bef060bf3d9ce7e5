// AF_UNIX socket table through NETLINK_SOCK_DIAG: type, state, bound name and, above all, the
// peer's inode, which /proc does not show and a socketpair restore needs.
import { SyscallError, closeFd, readFd, sys, writeFd } from './syscalls.ts';

export interface UnixSock {
  ino: number;
  type: number;
  state: number;
  peer: number;
  name: string | null;
  /** Listening sockets: connections waiting to be accepted and the backlog; others: bytes queued to read and the send buffer. */
  rqueue: number;
  wqueue: number;
}

const SOCK_DIAG_BY_FAMILY = 20;
const NLMSG_DONE = 3;
const NLMSG_ERROR = 2;

/**
 * Every AF_UNIX socket of one network namespace (the table is per namespace): the agent's own,
 * or the one of `diagFd`, a NETLINK_SOCK_DIAG socket created in another namespace (closed here).
 */
export function unixSockets(diagFd?: number): Map<number, UnixSock> {
  const fd = diagFd ?? sys('socket', 16, 2 | 0o2000000, 4); // AF_NETLINK, SOCK_DGRAM|CLOEXEC, NETLINK_SOCK_DIAG
  const out = new Map<number, UnixSock>();
  try {
    const req = Buffer.alloc(40);
    req.writeUInt32LE(40, 0);
    req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
    req.writeUInt16LE(0x301, 6); // NLM_F_REQUEST | NLM_F_DUMP
    req.writeUInt32LE(1, 8);
    req.writeUInt8(1, 16); // AF_UNIX
    req.writeUInt32LE(0xffffffff, 20); // all states
    req.writeUInt32LE(1 | 4 | 16, 28); // UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN
    writeFd(fd, req);
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = readFd(fd, buf);
      let off = 0;
      while (off + 16 <= n) {
        const len = buf.readUInt32LE(off);
        const type = buf.readUInt16LE(off + 4);
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) throw new SyscallError('sock_diag', -buf.readInt32LE(off + 16));
        const m = off + 16;
        const s: UnixSock = { type: buf.readUInt8(m + 1), state: buf.readUInt8(m + 2), ino: buf.readUInt32LE(m + 4), peer: 0, name: null, rqueue: 0, wqueue: 0 };
        let a = m + 16;
        while (a + 4 <= off + len) {
          const alen = buf.readUInt16LE(a);
          const atype = buf.readUInt16LE(a + 2);
          if (alen < 4) break;
          if (atype === 2) s.peer = buf.readUInt32LE(a + 4);
          // an abstract name starts with a NUL byte: shown as "@name"
          if (atype === 0) s.name = buf.subarray(a + 4, a + alen).toString('latin1').replace(/\0+$/, '').replace(/^\0/, '@');
          if (atype === 4) [s.rqueue, s.wqueue] = [buf.readUInt32LE(a + 4), buf.readUInt32LE(a + 8)];
          a += (alen + 3) & ~3;
        }
        out.set(s.ino, s);
        off += (len + 3) & ~3;
      }
      if (n === 0) return out;
    }
  } finally {
    closeFd(fd);
  }
}
