// shutdown(2) state of IP sockets through NETLINK_SOCK_DIAG (INET_DIAG_SHUTDOWN), which no
// socket option and no /proc file shows.
import { attrs, sockDiagDump } from './sockdiag.ts';

const INET_DIAG_SHUTDOWN = 8;

/**
 * inode -> shutdown bits (1 receive, 2 send) of every socket of one family and protocol in one
 * network namespace: the agent's own, or that of `diagFd` (a NETLINK_SOCK_DIAG socket, closed here).
 */
export function inetShutdowns(family: number, protocol: number, diagFd?: number): Map<number, number> {
  const out = new Map<number, number>();
  const req = Buffer.alloc(72); // nlmsghdr + inet_diag_req_v2
  req.writeUInt8(family, 16);
  req.writeUInt8(protocol, 17);
  req.writeUInt32LE(0xffffffff, 20); // all states
  sockDiagDump(
    req,
    (buf, m, end) => {
      const ino = buf.readUInt32LE(m + 68); // inet_diag_msg.idiag_inode
      for (const a of attrs(buf, m + 72, end)) if (a.type === INET_DIAG_SHUTDOWN) out.set(ino, buf.readUInt8(a.at));
    },
    diagFd,
  );
  return out;
}
