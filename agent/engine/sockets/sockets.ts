// Sockets of a tree at checkpoint time: their state, read through a duplicate of the workload's
// descriptor (which sockets are carried at all: classify.ts). TCP connections are put into
// repair mode and stay there until the checkpoint ends: killed, they close without a FIN or
// RST; released, they carry on. Restore: restore.ts.
import { lstatSync, readlinkSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import diagnostics_channel from 'node:diagnostics_channel';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { FdImage, InetAddr, InetSocketImage, ProcessImage, SharedImage, SocketOpts } from '../../../shared/image-format.ts';
import { AF, SOCK, SO, SOL, getIntOpt, getOpt, localAddr, newSocket, peerAddr, type SockAddr } from '../../ffi/sockets.ts';
import { closeFd, ioctl, sys } from '../../ffi/syscalls.ts';
import { dumpRawOpts } from './raw-sockets.ts';
import { TCP, dumpTcp, enterRepair, leaveRepair, tcpInfo } from './tcp-repair.ts';
import { UNIX_LISTEN, describeEnds, showAddr, shutdownOf, unixTableOf, withTheirFd } from './classify.ts';
import { fdTarget, listFds } from '../process/procfs.ts';

const chan = diagnostics_channel.channel('ferry:sockets');
export const IPV6_V6ONLY = 26;
const FIONREAD = 0x541b;

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
