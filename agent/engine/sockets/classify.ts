// Which sockets of a tree the engine carries (preflight), and the kernel's tables that tell:
// the unix sockets of a network namespace (sock_diag) and the shutdown bits of IP sockets, read
// once per preflight/collect pass. Each socket is looked at through a duplicate of the
// workload's descriptor (pidfd_getfd), which works whatever network namespace it lives in.
import { readFileSync, readlinkSync } from 'node:fs';
import { socketIn } from '../../ffi/netns-thread.ts';
import { AF, SOCK, SO, SOL, getIntOpt, localAddr, peerAddr, type SockAddr } from '../../ffi/sockets.ts';
import { closeFd, pidfdGetfd, pidfdOpen } from '../../ffi/syscalls.ts';
import { inetShutdowns } from '../../ffi/inetdiag.ts';
import { type UnixSock, unixSockets } from '../../ffi/unixdiag.ts';
import { rawProblem } from './raw-sockets.ts';
import { CARRIED_TCP_STATES, tcpInfo } from './tcp-repair.ts';

const IPPROTO = { TCP: 6, UDP: 17 } as const;
export const UNIX_LISTEN = 10;
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
export function shutdownOf(pid: number, ino: number, family: number, protocol: number): number {
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

export const showAddr = (a: SockAddr | null): string => (!a ? '?' : a.family === AF.UNIX ? a.name || '(unnamed)' : a.family === AF.INET6 ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`);
export const describeEnds = (s: number): string => `${showAddr(localAddr(s))} -> ${showAddr(peerAddr(s))}`;

