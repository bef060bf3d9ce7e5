// Link operations that must be fast (they sit inside a migration's freeze): interface flags and
// bridge ports through ioctls on a socket of the namespace where the links are, instead of
// running `ip`. Used for the network lock and for attaching a rebuilt namespace at cutover.
import { socketIn } from '../ffi/netns-thread.ts';
import { AF, SOCK, newSocket } from '../ffi/sockets.ts';
import { closeFd, ioctl } from '../ffi/syscalls.ts';

const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCGIFINDEX = 0x8933;
const SIOCBRADDIF = 0x89a2;
const SIOCBRDELIF = 0x89a3;
const IFF_UP = 1;

/** struct ifreq (40 bytes) with its name filled in. */
export const ifreq = (name: string): Buffer => {
  const b = Buffer.alloc(40);
  b.write(name, 0, 15, 'latin1');
  return b;
};

/** A control socket in the namespace at nsPath (the agent's own when null). */
export const controlSocket = (nsPath: string | null): number =>
  nsPath ? socketIn(nsPath, AF.INET, SOCK.DGRAM, 0) : newSocket(AF.INET, SOCK.DGRAM | SOCK.CLOEXEC, 0);

export function withControlSocket<T>(nsPath: string | null, fn: (s: number) => T): T {
  const s = controlSocket(nsPath);
  try {
    return fn(s);
  } finally {
    closeFd(s);
  }
}

export function ifindexOf(s: number, name: string): number {
  const r = ifreq(name);
  ioctl(s, SIOCGIFINDEX, r);
  return r.readInt32LE(16);
}

export function setLinkUp(s: number, name: string, up: boolean): void {
  const r = ifreq(name);
  ioctl(s, SIOCGIFFLAGS, r);
  const flags = r.readUInt16LE(16);
  r.writeUInt16LE(up ? flags | IFF_UP : flags & ~IFF_UP, 16);
  ioctl(s, SIOCSIFFLAGS, r);
}

/** Adds (or removes) a port of a bridge. */
export function bridgePort(s: number, bridge: string, port: string, add: boolean): void {
  const r = ifreq(bridge);
  r.writeInt32LE(ifindexOf(s, port), 16);
  ioctl(s, add ? SIOCBRADDIF : SIOCBRDELIF, r);
}
