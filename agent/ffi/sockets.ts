// Socket calls on descriptors the agent holds (its own, or a workload's through pidfd_getfd):
// socket addresses in and out of their kernel layout, integer and struct socket options. A
// socket's network namespace is fixed when it is created, so every call here works from any
// thread whatever namespace that thread is in.
import { isIPv4 } from 'node:net';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { SYS, libc } from './libc.ts';
import { check, sys } from './syscalls.ts';

export const AF = { UNIX: 1, INET: 2, INET6: 10, NETLINK: 16, PACKET: 17 } as const;
export const SOCK = { STREAM: 1, DGRAM: 2, RAW: 3, SEQPACKET: 5, NONBLOCK: 0o4000, CLOEXEC: 0o2000000 } as const;
export const SOL = { SOCKET: 1, IP: 0, IPV6: 41, TCP: 6, UDP: 17, ICMPV6: 58, RAW: 255 } as const;
/** IP protocol numbers (an IPPROTO_* is also the SOL_* level of its options). */
export const IPPROTO = { ICMP: 1, ICMPV6: 58 } as const;
export const SO = { REUSEADDR: 2, TYPE: 3, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, LINGER: 13, REUSEPORT: 15, ACCEPTCONN: 30, SNDBUFFORCE: 32, RCVBUFFORCE: 33, PROTOCOL: 38, DOMAIN: 39, BINDTODEVICE: 25 } as const;
export const MSG = { PEEK: 2, DONTWAIT: 0x40, NOSIGNAL: 0x4000 } as const;

/** An address as the engine keeps it: IP text and port for inet, the name for unix ("@x" = abstract, "" = unnamed). */
export type SockAddr = { family: 2 | 10; ip: string; port: number; flowinfo?: number; scopeId?: number } | { family: 1; name: string };

/** inet_pton: the address's 4 or 16 bytes. */
export function ipBytes(family: 2 | 10, ip: string): Buffer {
  const b = Buffer.alloc(family === AF.INET ? 4 : 16);
  if (libc.inetPton(family, ip, b) !== 1) throw new FerryError(ErrorCode.InvalidRequest, `not an IPv${family === AF.INET ? 4 : 6} address: "${ip}"`);
  return b;
}

/** inet_ntop: the canonical text of 4 or 16 address bytes. */
export function ipText(family: 2 | 10, bytes: Buffer): string {
  const out = Buffer.alloc(64);
  libc.inetNtop(family, bytes, out, out.length);
  return out.toString('latin1').replace(/\0.*$/s, '');
}

export function encodeAddr(a: SockAddr): Buffer {
  if (a.family === AF.UNIX) {
    const abstract = a.name.startsWith('@');
    const name = Buffer.from(abstract ? a.name.slice(1) : a.name, 'latin1');
    const b = Buffer.alloc(2 + name.length + (abstract ? 1 : 0) + (abstract || name.length === 0 ? 0 : 1));
    b.writeUInt16LE(AF.UNIX, 0);
    name.copy(b, abstract ? 3 : 2);
    return b;
  }
  if (a.family === AF.INET) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF.INET, 0);
    b.writeUInt16BE(a.port, 2);
    ipBytes(AF.INET, a.ip).copy(b, 4);
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF.INET6, 0);
  b.writeUInt16BE(a.port, 2);
  b.writeUInt32BE(a.flowinfo ?? 0, 4);
  ipBytes(AF.INET6, a.ip).copy(b, 8);
  b.writeUInt32LE(a.scopeId ?? 0, 24);
  return b;
}

export function decodeAddr(b: Buffer, len: number): SockAddr | null {
  if (len < 2) return null;
  const family = b.readUInt16LE(0);
  if (family === AF.INET) return { family, ip: ipText(AF.INET, b.subarray(4, 8)), port: b.readUInt16BE(2) };
  if (family === AF.INET6) {
    const scopeId = b.readUInt32LE(24);
    return { family, ip: ipText(AF.INET6, b.subarray(8, 24)), port: b.readUInt16BE(2), ...(scopeId ? { scopeId } : {}) };
  }
  if (family === AF.UNIX) {
    if (len <= 2) return { family, name: '' };
    if (b[2] === 0) return { family, name: `@${b.subarray(3, len).toString('latin1')}` };
    return { family, name: b.subarray(2, len).toString('latin1').replace(/\0.*$/s, '') };
  }
  return null;
}

const sockName = (call: 'getsockname' | 'getpeername', fd: number): SockAddr | null => {
  const b = Buffer.alloc(128);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(b.length, 0);
  try {
    sys(call, fd, b, len);
  } catch {
    return null; // ENOTCONN for getpeername of an unconnected socket
  }
  return decodeAddr(b, len.readUInt32LE(0));
};
export const localAddr = (fd: number): SockAddr | null => sockName('getsockname', fd);
export const peerAddr = (fd: number): SockAddr | null => sockName('getpeername', fd);

/** getsockopt into a buffer of `size` bytes; returns the bytes the kernel filled. */
export function getOpt(fd: number, level: number, name: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size, 0);
  check('getsockopt', () => libc.syscall(SYS.getsockopt, fd, level, name, b, len, 0), { fd, level, name });
  return b.subarray(0, len.readUInt32LE(0));
}
export const getIntOpt = (fd: number, level: number, name: number): number => getOpt(fd, level, name, 4).readInt32LE(0);

export function setOpt(fd: number, level: number, name: number, value: Buffer): void {
  check('setsockopt', () => libc.syscall(SYS.setsockopt, fd, level, name, value, value.length, 0), { fd, level, name });
}
export function setIntOpt(fd: number, level: number, name: number, v: number): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  setOpt(fd, level, name, b);
}

export const bindTo = (fd: number, a: SockAddr): void => {
  const b = encodeAddr(a);
  sys('bind', fd, b, b.length);
};
export const connectTo = (fd: number, a: SockAddr): void => {
  const b = encodeAddr(a);
  sys('connect', fd, b, b.length);
};
export const listenOn = (fd: number, backlog: number): void => void sys('listen', fd, backlog);
export const sendBytes = (fd: number, data: Buffer, flags = 0): number => sys('sendto', fd, data, data.length, flags, 0, 0);
export const peekBytes = (fd: number, n: number): Buffer => {
  const b = Buffer.alloc(n);
  return b.subarray(0, n === 0 ? 0 : sys('recvfrom', fd, b, n, MSG.PEEK | MSG.DONTWAIT, 0, 0));
};
export const newSocket = (domain: number, type: number, protocol: number): number => sys('socket', domain, type, protocol);

/** "10.0.0.1" or "fe80::1" as the family it is. */
export const familyOf = (ip: string): 2 | 10 => (isIPv4(ip) ? AF.INET : AF.INET6);
