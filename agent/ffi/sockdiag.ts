// One NETLINK_SOCK_DIAG dump: the request goes out, every answer message is handed on until
// NLMSG_DONE. Shared by the unix and inet socket tables.
import { SyscallError, closeFd, readFd, sys, writeFd } from './syscalls.ts';

const NLMSG_DONE = 3;
const NLMSG_ERROR = 2;
export const SOCK_DIAG_BY_FAMILY = 20;

/** Netlink attributes (type, value offset, value length) of one message from `from` to `end`. */
export function* attrs(buf: Buffer, from: number, end: number): Generator<{ type: number; at: number; len: number }> {
  for (let a = from; a + 4 <= end; ) {
    const alen = buf.readUInt16LE(a);
    if (alen < 4) return;
    yield { type: buf.readUInt16LE(a + 2) & 0x3fff, at: a + 4, len: alen - 4 };
    a += (alen + 3) & ~3;
  }
}

/**
 * Sends `req` (its nlmsghdr filled in here: length, type, dump flags) on `diagFd`, or on a fresh
 * NETLINK_SOCK_DIAG socket of the agent's namespace, and calls `each(buf, body, end)` per answer;
 * the socket is closed at the end.
 */
export function sockDiagDump(req: Buffer, each: (buf: Buffer, body: number, end: number) => void, diagFd?: number): void {
  const fd = diagFd ?? sys('socket', 16, 2 | 0o2000000, 4); // AF_NETLINK, SOCK_DGRAM|CLOEXEC, NETLINK_SOCK_DIAG
  try {
    req.writeUInt32LE(req.length, 0);
    req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
    req.writeUInt16LE(0x301, 6); // NLM_F_REQUEST | NLM_F_DUMP
    req.writeUInt32LE(1, 8);
    writeFd(fd, req);
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = readFd(fd, buf);
      if (n === 0) return;
      let off = 0;
      while (off + 16 <= n) {
        const len = buf.readUInt32LE(off);
        const type = buf.readUInt16LE(off + 4);
        if (type === NLMSG_DONE) return;
        if (type === NLMSG_ERROR) throw new SyscallError('sock_diag', -buf.readInt32LE(off + 16));
        each(buf, off + 16, off + len);
        off += (len + 3) & ~3;
      }
    }
  } finally {
    closeFd(fd);
  }
}
