// Sockets of a tree at checkpoint time: which ones the engine carries (preflight), and their
// state (collect). Each socket is read through a duplicate of the workload's descriptor
// (pidfd_getfd), which works whatever network namespace the socket lives in. TCP connections
// are put into repair mode and stay there until the checkpoint ends: killed, they close
// without a FIN or RST; released, they carry on.
import { chmodSync, chownSync, lstatSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import diagnostics_channel from 'node:diagnostics_channel';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { FdImage, InetAddr, InetSocketImage, ProcessImage, SharedImage, SocketOpts } from '../../shared/image-format.ts';
import { socketIn } from '../ffi/netns-thread.ts';
import {
  AF,
  SOCK,
  SO,
  SOL,
  bindTo,
  connectTo,
  getIntOpt,
  getOpt,
  listenOn,
  localAddr,
  newSocket,
  peerAddr,
  setIntOpt,
  setOpt,
  type SockAddr,
} from '../ffi/sockets.ts';
import { closeFd, ioctl, isErrno, pidfdGetfd, pidfdOpen, sys } from '../ffi/syscalls.ts';
import { inetShutdowns } from '../ffi/inetdiag.ts';
import { type UnixSock, unixSockets } from '../ffi/unixdiag.ts';
import { applyRawOpts, dumpRawOpts, rawProblem } from './raw-sockets.ts';
import { CARRIED_TCP_STATES, TCP, activateTcp, dumpTcp, enterRepair, leaveRepair, restoreTcp, tcpInfo } from './tcp-repair.ts';
import { fdTarget, listFds } from './procfs.ts';

const chan = diagnostics_channel.channel('ferry:sockets');
const IPPROTO = { TCP: 6, UDP: 17 } as const;
const IPV6_V6ONLY = 26;
const IP_FREEBIND = 15;
const IPV6_FREEBIND = 78;
const FIONREAD = 0x541b;
const UNIX_LISTEN = 10;
const UNIX_ESTABLISHED = 1;

/** Runs fn on a duplicate of another process's descriptor. */
export function withTheirFd<T>(pid: number, fd: number, fn: (mine: number) => T): T {
  const pidfd = pidfdOpen(pid);
  try {
    const mine = pidfdGetfd(pidfd, fd);
    try {
      return fn(mine);
    } finally {
      closeFd(mine);
    }
  } finally {
    closeFd(pidfd);
  }
}

const netnsOf = (pid: number | 'self'): string => readlinkSync(`/proc/${pid}/ns/net`);

// The unix socket table is per network namespace and read once per preflight/collect pass.
const unixTables = new Map<string, Map<number, UnixSock>>();
export const clearSocketTables = (): void => {
  unixTables.clear();
  shutdownTables.clear();
};

/** The AF_UNIX sockets of the network namespace `pid` is in. */
export function unixTableOf(pid: number): Map<number, UnixSock> {
  const ns = netnsOf(pid);
  let t = unixTables.get(ns);
  if (!t) {
    t = ns === netnsOf('self') ? unixSockets() : unixSockets(socketIn(`/proc/${pid}/ns/net`, AF.NETLINK, SOCK.DGRAM, 4));
    unixTables.set(ns, t);
  }
  return t;
}

const shutdownTables = new Map<string, Map<number, number>>();

/** shutdown(2) bits (1 receive, 2 send) of an IP socket of the namespace `pid` is in; 0 when it was never shut down. */
function shutdownOf(pid: number, ino: number, family: number, protocol: number): number {
  const key = `${netnsOf(pid)}/${family}/${protocol}`;
  let t = shutdownTables.get(key);
  if (!t) {
    t = inetShutdowns(family, protocol, netnsOf(pid) === netnsOf('self') ? undefined : socketIn(`/proc/${pid}/ns/net`, AF.NETLINK, SOCK.DGRAM, 4));
    shutdownTables.set(key, t);
  }
  return t.get(ino) ?? 0;
}

/** A connected stream or seqpacket unix socket whose peer has closed: it still reads what is left, then end of file. */
export const isWidowed = (u: UnixSock): boolean => u.peer === 0 && u.state === UNIX_ESTABLISHED && u.type !== 2;

/** Both ends of a connected unix pair know each other (a datagram socket may be connected one way only). */
export function unixPeerOf(pid: number, u: UnixSock): UnixSock | null {
  if (u.peer === 0) return null;
  const p = unixTableOf(pid).get(u.peer);
  return p && p.peer === u.ino ? p : null;
}

const FAMILY_NAMES: Record<number, string> = { 16: 'netlink', 17: 'packet', 38: 'alg', 40: 'vsock', 44: 'xdp' };

function classifyUnix(pid: number, fd: number, ino: number): { kind: 'unix' } | { unsupported: string } {
  const u = unixTableOf(pid).get(ino);
  if (!u) return { unsupported: 'socket' };
  const scm = Number(/^scm_fds:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? 0);
  if (scm > 0) return { unsupported: `unix socket with ${scm} fd(s) in flight (SCM_RIGHTS)` };
  if (u.state === UNIX_LISTEN) return u.rqueue > 0 ? { unsupported: `unix listening socket with ${u.rqueue} connection(s) waiting to be accepted` } : { kind: 'unix' };
  if (u.peer !== 0 && !unixPeerOf(pid, u)) return { unsupported: `unix socket whose peer ${u.peer} is connected elsewhere` };
  if (isWidowed(u)) return { kind: 'unix' };
  if (u.peer === 0 && u.rqueue > 0) return { unsupported: `unconnected unix ${u.type === 2 ? 'datagram' : 'seqpacket'} socket with queued messages` };
  return { kind: 'unix' };
}

/** Whether the engine carries this socket: unix, TCP (listening, connected, half closed by us) and UDP. */
export function classifySocket(pid: number, fd: number, ino: number): { kind: 'unix' | 'inet' } | { unsupported: string; detail?: string } {
  return withTheirFd(pid, fd, (s) => {
    const domain = getIntOpt(s, SOL.SOCKET, SO.DOMAIN);
    if (domain === AF.UNIX) return classifyUnix(pid, fd, ino);
    if (domain !== AF.INET && domain !== AF.INET6) return { unsupported: `${FAMILY_NAMES[domain] ?? `family ${domain}`} socket` };
    const type = getIntOpt(s, SOL.SOCKET, SO.TYPE);
    const proto = getIntOpt(s, SOL.SOCKET, SO.PROTOCOL);
    const v = domain === AF.INET6 ? 'v6' : 'v4';
    if (type === SOCK.STREAM && proto === IPPROTO.TCP) {
      const st = tcpInfo(s);
      if (!CARRIED_TCP_STATES.has(st.state)) return { unsupported: `TCP${v} socket in state ${st.state}`, detail: `socket:[${ino}] ${describeEnds(s)}` };
      // Closed after a connection: it reads end of file and cannot send, which a fresh socket would not do.
      if (st.state === 'closed' && st.segments > 0) return { unsupported: `TCP${v} socket whose connection has ended (closed)`, detail: `socket:[${ino}] ${describeEnds(s)}` };
      if (st.state === 'listen' && st.acceptQueue > 0)
        return { unsupported: `TCP${v} listening socket with ${st.acceptQueue} connection(s) waiting to be accepted`, detail: `socket:[${ino}] ${describeEnds(s)}` };
      return { kind: 'inet' };
    }
    if (type === SOCK.DGRAM && proto === IPPROTO.UDP) return { kind: 'inet' };
    if (type === SOCK.RAW) {
      const why = rawProblem(s);
      return why ? { unsupported: `raw IP${v} socket (protocol ${proto})`, detail: `socket:[${ino}]: ${why}` } : { kind: 'inet' };
    }
    return { unsupported: `type ${type} IP${v} socket (protocol ${proto})` };
  });
}

const showAddr = (a: SockAddr | null): string => (!a ? '?' : a.family === AF.UNIX ? a.name || '(unnamed)' : a.family === AF.INET6 ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`);
const describeEnds = (s: number): string => `${showAddr(localAddr(s))} -> ${showAddr(peerAddr(s))}`;

const inetAddr = (a: SockAddr | null): InetAddr | null => (a && a.family !== AF.UNIX ? { ip: a.ip, port: a.port } : null);

/** Buffer sizes as a fresh socket of this kind gets them, to tell the workload's own settings apart. */
const defaultBufs = new Map<string, [number, number]>();
function bufDefaults(domain: number, type: number, protocol: number): [number, number] {
  // A raw socket needs its protocol; the others take the default one.
  const proto = type === SOCK.RAW ? protocol : 0;
  const key = `${domain}/${type}/${proto}`;
  let d = defaultBufs.get(key);
  if (!d) {
    const s = newSocket(domain, type | SOCK.CLOEXEC, proto);
    try {
      d = [getIntOpt(s, SOL.SOCKET, SO.RCVBUF), getIntOpt(s, SOL.SOCKET, SO.SNDBUF)];
    } finally {
      closeFd(s);
    }
    defaultBufs.set(key, d);
  }
  return d;
}

function dumpOpts(s: number, domain: number, type: number, protocol: number): SocketOpts {
  const tcp = type === SOCK.STREAM;
  const on = (level: number, name: number) => getIntOpt(s, level, name) !== 0;
  const o: SocketOpts = { reuseaddr: on(SOL.SOCKET, SO.REUSEADDR), reuseport: on(SOL.SOCKET, SO.REUSEPORT), keepalive: on(SOL.SOCKET, SO.KEEPALIVE) };
  if (tcp) {
    o.keepidle = getIntOpt(s, SOL.TCP, TCP.KEEPIDLE);
    o.keepintvl = getIntOpt(s, SOL.TCP, TCP.KEEPINTVL);
    o.keepcnt = getIntOpt(s, SOL.TCP, TCP.KEEPCNT);
    o.nodelay = on(SOL.TCP, TCP.NODELAY);
  }
  // A raw socket is born bound to its protocol, and the kernel takes V6ONLY only before a bind.
  if (domain === AF.INET6 && type !== SOCK.RAW) o.v6only = on(SOL.IPV6, IPV6_V6ONLY);
  const l = getOpt(s, SOL.SOCKET, SO.LINGER, 8);
  if (l.readInt32LE(0) !== 0) o.linger = [l.readInt32LE(0), l.readInt32LE(4)];
  // TCP autotuning only ever grows the buffers: a smaller one was set by the workload. (A larger
  // one may have been too; it is left to autotuning.)
  const [rcv, snd] = [getIntOpt(s, SOL.SOCKET, SO.RCVBUF), getIntOpt(s, SOL.SOCKET, SO.SNDBUF)];
  const [dRcv, dSnd] = bufDefaults(domain, type, protocol);
  if (tcp ? rcv < dRcv : rcv !== dRcv) o.rcvbuf = rcv;
  if (tcp ? snd < dSnd : snd !== dSnd) o.sndbuf = snd;
  return o;
}

/** One TCP or UDP socket; a TCP connection is left in repair mode (the caller holds `s`). */
function dumpInet(s: number, flags: number): InetSocketImage {
  const family = getIntOpt(s, SOL.SOCKET, SO.DOMAIN) as 2 | 10;
  const type = getIntOpt(s, SOL.SOCKET, SO.TYPE) as 1 | 2 | 3;
  const protocol = getIntOpt(s, SOL.SOCKET, SO.PROTOCOL);
  const local = inetAddr(localAddr(s));
  const remote = inetAddr(peerAddr(s));
  const tcp = type === SOCK.STREAM;
  const img: InetSocketImage = { kind: 'inet', family, type, protocol, flags, state: 'closed', local, remote, backlog: 0, opts: dumpOpts(s, family, type, protocol) };
  if (!tcp) {
    // A raw socket's local port is its protocol: it counts as bound, and binding it again to that is harmless.
    img.state = remote ? 'connected' : local && local.port !== 0 ? 'bound' : 'closed';
    if (type === SOCK.RAW) img.raw = dumpRawOpts(s, family, protocol);
    const n = Buffer.alloc(4);
    ioctl(s, FIONREAD, n);
    // Datagrams waiting to be read cannot be sent again from their senders: they are lost, as UDP allows.
    if (n.readInt32LE(0) > 0 && chan.hasSubscribers) chan.publish({ kind: 'udp-queue-dropped', local, bytes: n.readInt32LE(0) });
    return img;
  }
  const info = tcpInfo(s);
  if (info.state === 'listen') {
    if (info.acceptQueue > 0)
      throw new FerryError(ErrorCode.Unsupported, `listening TCP socket ${showAddr(localAddr(s))}: ${info.acceptQueue} connection(s) waiting to be accepted`, {
        retryable: true,
        details: { kind: 'TCP listening socket with pending connections' },
      });
    return { ...img, state: 'listen', backlog: info.backlog };
  }
  if (info.state === 'closed') return { ...img, state: local && local.port !== 0 ? 'bound' : 'closed' };
  if (info.state !== 'established' && info.state !== 'fin-wait1' && info.state !== 'fin-wait2')
    throw new FerryError(ErrorCode.Unsupported, `TCP socket (${describeEnds(s)}) in state ${info.state}`, { details: { kind: `TCP socket in state ${info.state}` } });
  enterRepair(s);
  return { ...img, state: info.state, tcp: dumpTcp(s, info.state) };
}

/**
 * Takes every TCP connection of the processes out of repair mode: a restarted agent thawing a
 * held tree whose checkpoint (and its RepairHold) died with the previous agent. Never throws.
 */
export function leaveRepairAll(pids: readonly number[]): number {
  let n = 0;
  for (const pid of pids) {
    let fds: number[];
    try {
      fds = listFds(pid).filter((fd) => fdTarget(pid, fd).startsWith('socket:'));
    } catch {
      continue; // gone
    }
    for (const fd of fds) {
      try {
        withTheirFd(pid, fd, (mine) => {
          if (getIntOpt(mine, SOL.TCP, TCP.REPAIR) !== 1) return;
          leaveRepair(mine);
          n++;
        });
      } catch {
        // not TCP, or gone
      }
    }
  }
  return n;
}

/** Relative unix names are taken from the process's working directory. */
const unixName = (pid: number, name: string | null): string =>
  !name || name.startsWith('@') || isAbsolute(name) ? (name ?? '') : join(readlinkSync(`/proc/${pid}/cwd`), name);

/**
 * TCP connections in repair mode, held from collect to the end of the checkpoint: `close()`
 * after the tree is killed (nothing goes out), `release()` when the tree runs on.
 */
export class RepairHold {
  constructor(private fds: number[] = []) {}
  add(fd: number): void {
    this.fds.push(fd);
  }
  get count(): number {
    return this.fds.length;
  }
  release(): void {
    for (const fd of this.fds) {
      try {
        leaveRepair(fd);
      } catch {
        // the connection is gone
      }
    }
    this.close();
  }
  close(): void {
    for (const fd of this.fds.splice(0)) closeFd(fd);
  }
}

/** Owner and mode of a bound unix socket's file, seen from the process's root; null for abstract or unnamed ones. */
function socketFileOf(pid: number, name: string): { uid: number; gid: number; mode: number } | null {
  if (!isAbsolute(name)) return null;
  try {
    const st = lstatSync(`/proc/${pid}/root${name}`);
    return st.isSocket() ? { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 } : null;
  } catch {
    return null; // unlinked since the bind
  }
}

const socketIno = (f: FdImage): number => Number(/\d+/.exec(f.path)?.[0] ?? 0);

/**
 * Adds one shared entry per TCP/UDP socket and per unix socket that is not one end of a pair
 * (those are linkShared's socketpairs), and points the fds at them. Returns the repair-mode
 * connections, which the caller ends.
 */
export function linkSockets(procs: readonly ProcessImage[], shared: SharedImage[]): RepairHold {
  const hold = new RepairHold();
  const byIno = new Map<number, number>();
  try {
    for (const p of procs) {
      for (const f of p.fds) {
        if ((f.kind !== 'inet' && f.kind !== 'unix') || f.dupOf !== undefined || f.shared !== undefined) continue;
        const ino = socketIno(f);
        let idx = byIno.get(ino);
        if (idx === undefined) {
          let entry: SharedImage;
          if (f.kind === 'unix') {
            const u = unixTableOf(p.pid).get(ino);
            if (!u) throw new FerryError(ErrorCode.Unsupported, `pid ${p.pid} fd ${f.fd}: unix socket ${ino} vanished`, { details: { pid: p.pid, fd: f.fd, kind: 'unix socket' } });
            if (u.rqueue > 0 && u.state !== UNIX_LISTEN)
              throw new FerryError(ErrorCode.Unsupported, `pid ${p.pid} fd ${f.fd}: unconnected unix socket with queued messages`, { details: { pid: p.pid, fd: f.fd, kind: 'unix datagram socket' } });
            if (u.state === UNIX_LISTEN && u.rqueue > 0)
              throw new FerryError(ErrorCode.Unsupported, `pid ${p.pid} fd ${f.fd}: unix listening socket with ${u.rqueue} connection(s) waiting to be accepted`, {
                retryable: true,
                details: { pid: p.pid, fd: f.fd, kind: 'unix listening socket with pending connections' },
              });
            const name = unixName(p.pid, u.name);
            const file = socketFileOf(p.pid, name);
            entry = { kind: 'unix-socket', type: u.type, flags: f.flags, name, listening: u.state === UNIX_LISTEN, backlog: u.state === UNIX_LISTEN ? u.wqueue : 0, ...(file ? { file } : {}) };
          } else {
            entry = withTheirFd(p.pid, f.fd, (s) => {
              const img = dumpInet(s, f.flags);
              if (img.tcp) hold.add(sys('fcntl', s, 1030, 0)); // F_DUPFD_CLOEXEC: keep the repair-mode socket
              if (img.type === SOCK.DGRAM) {
                const sd = shutdownOf(p.pid, ino, img.family, img.protocol);
                if (sd !== 0) img.shutdown = sd;
              }
              return img;
            });
          }
          idx = shared.length;
          shared.push(entry);
          byIno.set(ino, idx);
        }
        f.shared = idx;
      }
    }
    return hold;
  } catch (err) {
    hold.release();
    throw err;
  }
}

// --- restore -----------------------------------------------------------------------------------

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
