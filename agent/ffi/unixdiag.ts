// AF_UNIX socket table through NETLINK_SOCK_DIAG: type, state, bound name and, above all, the
// peer's inode, which /proc does not show and a socketpair restore needs.
import { attrs, sockDiagDump } from './sockdiag.ts';

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

/**
 * Every AF_UNIX socket of one network namespace (the table is per namespace): the agent's own,
 * or the one of `diagFd`, a NETLINK_SOCK_DIAG socket created in another namespace (closed here).
 */
export function unixSockets(diagFd?: number): Map<number, UnixSock> {
  const out = new Map<number, UnixSock>();
  const req = Buffer.alloc(40); // nlmsghdr + unix_diag_req
  req.writeUInt8(1, 16); // AF_UNIX
  req.writeUInt32LE(0xffffffff, 20); // all states
  req.writeUInt32LE(1 | 4 | 16, 28); // UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN
  sockDiagDump(
    req,
    (buf, m, end) => {
      const s: UnixSock = { type: buf.readUInt8(m + 1), state: buf.readUInt8(m + 2), ino: buf.readUInt32LE(m + 4), peer: 0, name: null, rqueue: 0, wqueue: 0 };
      for (const a of attrs(buf, m + 16, end)) {
        if (a.type === 2) s.peer = buf.readUInt32LE(a.at);
        // an abstract name starts with a NUL byte: shown as "@name"
        if (a.type === 0) s.name = buf.subarray(a.at, a.at + a.len).toString('latin1').replace(/\0+$/, '').replace(/^\0/, '@');
        if (a.type === 4) [s.rqueue, s.wqueue] = [buf.readUInt32LE(a.at), buf.readUInt32LE(a.at + 4)];
      }
      out.set(s.ino, s);
    },
    diagFd,
  );
  return out;
}
