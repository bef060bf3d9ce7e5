// Sockets back into a restored tree (sockets.ts read them): each made by the husk, so it belongs
// to the husk's network namespace, and set up from the agent through a duplicate of it. TCP
// connections come back in repair mode once every listener is bound, and leave it (a window
// probe goes out) only when activated, once the network is reachable.
import { chmodSync, chownSync, lstatSync, unlinkSync } from 'node:fs';
import { type InetAddr, type InetSocketImage, type SharedImage } from '../../../shared/image-format.ts';
import { AF, SO, SOL, bindTo, connectTo, listenOn, setIntOpt, setOpt, type SockAddr } from '../../ffi/sockets.ts';
import { closeFd, isErrno, sys } from '../../ffi/syscalls.ts';
import { type HeldConnection, type HuskProcess, agentFd } from '../process/husk-core.ts';
import { applyRawOpts } from './raw-sockets.ts';
import { IPV6_V6ONLY } from './sockets.ts';
import { TCP, activateTcp, restoreTcp } from './tcp-repair.ts';

const IP_FREEBIND = 15;
const IPV6_FREEBIND = 78;

/**
 * The socket of one shared entry, made by the husk on fd `fd` and set up from the agent. A TCP
 * connection is returned (the agent's duplicate, also kept in the husk's connections) for
 * restoreConnection() once every listener is bound.
 */
export function createSocket(h: HuskProcess, sh: Extract<SharedImage, { kind: 'inet' | 'unix-socket' }>, fd: number): HeldConnection | null {
  const tmp = h.inj(h.pid, 'socket', [sh.kind === 'inet' ? sh.family : AF.UNIX, sh.type, sh.kind === 'inet' ? sh.protocol : 0]);
  h.inj(h.pid, 'dup3', [tmp, fd, 0]);
  h.inj(h.pid, 'close', [tmp]);
  const mine = agentFd(h.pid, fd);
  try {
    restoreSocket(mine, sh);
  } catch (err) {
    closeFd(mine);
    throw err;
  }
  if (sh.kind === 'inet' && sh.tcp) {
    const c = { fd: mine, img: sh };
    h.connections.push(c);
    return c;
  }
  closeFd(mine);
  return null;
}

/**
 * Lets the husk's restored TCP connections talk: each leaves repair mode (a window probe goes
 * out) and sends what it had never sent. Call once the namespace is reachable, before the tree runs.
 */
export function activateSockets(h: HuskProcess): void {
  for (const c of h.connections.splice(0)) {
    try {
      activateConnection(c.fd, c.img);
    } finally {
      closeFd(c.fd);
    }
  }
}

const sockAddr = (family: 2 | 10, a: InetAddr): SockAddr => ({ family, ip: a.ip, port: a.port });

function applyOpts(s: number, img: InetSocketImage): void {
  const o = img.opts;
  const flag = (level: number, name: number, v: boolean | undefined) => {
    if (v !== undefined) setIntOpt(s, level, name, v ? 1 : 0);
  };
  flag(SOL.SOCKET, SO.REUSEADDR, o.reuseaddr);
  flag(SOL.SOCKET, SO.REUSEPORT, o.reuseport);
  flag(SOL.SOCKET, SO.KEEPALIVE, o.keepalive);
  if (img.family === AF.INET6) flag(SOL.IPV6, IPV6_V6ONLY, o.v6only);
  if (o.keepidle !== undefined) setIntOpt(s, SOL.TCP, TCP.KEEPIDLE, o.keepidle);
  if (o.keepintvl !== undefined) setIntOpt(s, SOL.TCP, TCP.KEEPINTVL, o.keepintvl);
  if (o.keepcnt !== undefined) setIntOpt(s, SOL.TCP, TCP.KEEPCNT, o.keepcnt);
  if (o.linger) {
    const l = Buffer.alloc(8);
    l.writeInt32LE(o.linger[0], 0);
    l.writeInt32LE(o.linger[1], 4);
    setOpt(s, SOL.SOCKET, SO.LINGER, l);
  }
  // The kernel doubles what it is given.
  if (o.rcvbuf !== undefined) setIntOpt(s, SOL.SOCKET, SO.RCVBUFFORCE, o.rcvbuf >> 1);
  if (o.sndbuf !== undefined) setIntOpt(s, SOL.SOCKET, SO.SNDBUFFORCE, o.sndbuf >> 1);
}

/** Binding works before the address is configured (the namespace's interface may come up later). */
function bindFree(s: number, img: InetSocketImage, local: InetAddr): void {
  const [level, name] = img.family === AF.INET6 ? [SOL.IPV6, IPV6_FREEBIND] : [SOL.IP, IP_FREEBIND];
  setIntOpt(s, level, name, 1);
  bindTo(s, sockAddr(img.family, local));
  setIntOpt(s, level, name, 0);
}

/**
 * Gives a fresh socket (created in the target namespace) the saved state, except TCP
 * connections, which restoreConnection() does once every listener is back.
 */
export function restoreSocket(s: number, sh: SharedImage): void {
  if (sh.kind === 'unix-socket') {
    if (sh.name) {
      if (!sh.name.startsWith('@')) removeStaleSocketFile(sh.name);
      bindTo(s, { family: AF.UNIX, name: sh.name });
      // The agent made the file: give it the workload's owner and mode, or connecting to it may be refused.
      if (sh.file) {
        chownSync(sh.name, sh.file.uid, sh.file.gid);
        chmodSync(sh.name, sh.file.mode);
      }
    }
    if (sh.listening) listenOn(s, sh.backlog);
  } else if (sh.kind === 'inet') {
    applyOpts(s, sh);
    if (sh.raw) applyRawOpts(s, sh.family, sh.raw);
    if (!sh.tcp) {
      if (sh.local && (sh.local.port !== 0 || sh.state === 'listen')) bindFree(s, sh, sh.local);
      if (sh.state === 'listen') listenOn(s, sh.backlog);
      if (sh.state === 'connected' && sh.remote) connectTo(s, sockAddr(sh.family, sh.remote));
      if (sh.shutdown) shutdownAgain(s, sh.shutdown);
    }
    if (sh.opts.nodelay) setIntOpt(s, SOL.TCP, TCP.NODELAY, 1);
  } else return;
  sys('fcntl', s, 4, sh.flags & ~3); // F_SETFL: O_NONBLOCK and friends live on the description
}

/** shutdown(2) once more; an unconnected datagram socket answers ENOTCONN but keeps the flag all the same. */
function shutdownAgain(s: number, bits: number): void {
  try {
    sys('shutdown', s, bits - 1); // 1 -> SHUT_RD 0, 2 -> SHUT_WR 1, 3 -> SHUT_RDWR 2
  } catch (err) {
    if (!isErrno(err, 'ENOTCONN')) throw err;
  }
}

/** A TCP connection into its fresh socket, in repair mode until activateConnection(). */
export function restoreConnection(s: number, sh: InetSocketImage): void {
  if (!sh.tcp || !sh.local || !sh.remote) return;
  const [level, name] = sh.family === AF.INET6 ? [SOL.IPV6, IPV6_FREEBIND] : [SOL.IP, IP_FREEBIND];
  setIntOpt(s, level, name, 1);
  restoreTcp(s, sh.tcp, sockAddr(sh.family, sh.local), sockAddr(sh.family, sh.remote));
  setIntOpt(s, level, name, 0);
}

export const activateConnection = (s: number, sh: InetSocketImage): void => {
  if (sh.tcp) activateTcp(s, sh.tcp);
};

/** The socket file a dead original left behind (a restore on the same filesystem). Only sockets are removed. */
function removeStaleSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // not there
  }
}
