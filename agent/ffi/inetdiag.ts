// shutdown(2) state of IP sockets through NETLINK_SOCK_DIAG (INET_DIAG_SHUTDOWN), which no
// socket option and no /proc file shows.
import { SyscallError, closeFd, readFd, sys, writeFd } from './syscalls.ts';

const SOCK_DIAG_BY_FAMILY = 20;
const NLMSG_DONE = 3;
const NLMSG_ERROR = 2;
const INET_DIAG_SHUTDOWN = 8;

/**
 * inode -> shutdown bits (1 receive, 2 send) of every socket of one family and protocol in one
 * network namespace: the agent's own, or that of `diagFd` (a NETLINK_SOCK_DIAG socket, closed here).
 */
export function inetShutdowns(family: number, protocol: number, diagFd?: number): Map<number, number> {
  const fd = diagFd ?? sys('socket', 16, 2 | 0o2000000, 4); // AF_NETLINK, SOCK_DGRAM|CLOEXEC, NETLINK_SOCK_DIAG
  const out = new Map<number, number>();
  try {
    const req = Buffer.alloc(72);
    req.writeUInt32LE(72, 0);
    req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
    req.writeUInt16LE(0x301, 6); // NLM_F_REQUEST | NLM_F_DUMP
    req.writeUInt32LE(1, 8);
    req.writeUInt8(family, 16);
    req.writeUInt8(protocol, 17);
    req.writeUInt32LE(0xffffffff, 20); // all states
    writeFd(fd, req);
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = readFd(fd, buf);
      if (n === 0) return out;
      let off = 0;
      while (off + 16 <= n) {
        const len = buf.readUInt32LE(off);
        const type = buf.readUInt16LE(off + 4);
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) throw new SyscallError('inet sock_diag', -buf.readInt32LE(off + 16));
        const m = off + 16;
        const ino = buf.readUInt32LE(m + 68);
        for (let a = m + 72; a + 4 <= off + len; ) {
          const alen = buf.readUInt16LE(a);
          if (alen < 4) break;
          if ((buf.readUInt16LE(a + 2) & 0x3fff) === INET_DIAG_SHUTDOWN) out.set(ino, buf.readUInt8(a + 4));
          a += (alen + 3) & ~3;
        }
        off += (len + 3) & ~3;
      }
    }
  } finally {
    closeFd(fd);
  }
}
