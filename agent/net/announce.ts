// Telling the fabric where a workload's addresses live now: a gratuitous ARP (request and reply
// forms) per IPv4 address and an unsolicited neighbour advertisement (override set) per IPv6
// address, sent from inside the workload's namespace. Bridges learn the MAC's new port from
// them and peers refresh their caches. The sockets can be opened ahead (before a freeze) so
// announcing at cutover is only a few sendto calls.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { NetnsConfig } from '../../shared/netns.ts';
import { socketIn } from '../ffi/netns-thread.ts';
import { AF, IPPROTO, SOCK, SOL, encodeAddr, ipBytes, setIntOpt } from '../ffi/sockets.ts';
import { closeFd, ioctl, sys } from '../ffi/syscalls.ts';
import type { NetnsHandle } from './handle.ts';
import { ifindexOf, ifreq } from './link.ts';

const ETH_P_ARP = 0x0806;
const SIOCGIFHWADDR = 0x8927;
const IPV6_UNICAST_HOPS = 16;
const IPV6_MULTICAST_HOPS = 18;
const ND_NEIGHBOR_ADVERT = 136;
const NA_OVERRIDE = 0x20;

interface Port {
  ifname: string;
  ifindex: number;
  mac: Buffer;
  v4: string[];
  v6: string[];
}

export interface Announcer {
  /** Sends one round of announcements; returns how many packets went out. */
  send(): number;
  close(): void;
}

function macOf(fd: number, name: string): Buffer {
  const r = ifreq(name);
  ioctl(fd, SIOCGIFHWADDR, r);
  return Buffer.from(r.subarray(18, 24)); // ifr_hwaddr: a sockaddr, family then the address
}

function arp(port: Port, ip: string, op: 1 | 2): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(0x0800, 2); // IPv4
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(op, 6);
  port.mac.copy(b, 8);
  ipBytes(AF.INET, ip).copy(b, 14);
  if (op === 2) Buffer.alloc(6, 0xff).copy(b, 18);
  ipBytes(AF.INET, ip).copy(b, 24); // target = sender: gratuitous
  return b;
}

function neighbourAdvert(port: Port, ip: string): Buffer {
  const b = Buffer.alloc(32);
  b[0] = ND_NEIGHBOR_ADVERT;
  b[4] = NA_OVERRIDE; // the kernel fills in the checksum of ICMPv6 raw sockets
  ipBytes(AF.INET6, ip).copy(b, 8);
  b[24] = 2; // option: target link-layer address
  b[25] = 1;
  port.mac.copy(b, 26);
  return b;
}

/** Opens the sockets inside the namespace for every veth interface with addresses. */
export function openAnnouncer(h: Pick<NetnsHandle, 'path' | 'ports'>, config: NetnsConfig): Announcer {
  const arpFd = socketIn(h.path, AF.PACKET, SOCK.DGRAM, ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8));
  let icmpFd = -1;
  try {
    const ports: Port[] = h.ports.map((p) => {
      const i = config.interfaces.find((x) => x.name === p.ifname);
      return {
        ifname: p.ifname,
        ifindex: ifindexOf(arpFd, p.ifname),
        mac: macOf(arpFd, p.ifname),
        v4: (i?.addresses ?? []).filter((a) => a.family === 'inet').map((a) => a.address),
        v6: (i?.addresses ?? []).filter((a) => a.family === 'inet6').map((a) => a.address),
      };
    });
    if (ports.some((p) => p.v6.length > 0)) {
      icmpFd = socketIn(h.path, AF.INET6, SOCK.RAW, IPPROTO.ICMPV6);
      setIntOpt(icmpFd, SOL.IPV6, IPV6_MULTICAST_HOPS, 255); // neighbour discovery insists on 255
      setIntOpt(icmpFd, SOL.IPV6, IPV6_UNICAST_HOPS, 255);
    }
    const send = (): number => {
      let n = 0;
      for (const p of ports) {
        const ll = Buffer.alloc(20);
        ll.writeUInt16LE(AF.PACKET, 0);
        ll.writeUInt16BE(ETH_P_ARP, 2);
        ll.writeInt32LE(p.ifindex, 4);
        ll.writeUInt16LE(1, 8);
        ll[11] = 6;
        Buffer.alloc(6, 0xff).copy(ll, 12);
        for (const ip of p.v4) {
          for (const op of [1, 2] as const) {
            const pkt = arp(p, ip, op);
            sys('sendto', arpFd, pkt, pkt.length, 0, ll, ll.length);
            n++;
          }
        }
        for (const ip of p.v6) {
          const pkt = neighbourAdvert(p, ip);
          const to = encodeAddr({ family: AF.INET6, ip: 'ff02::1', port: 0, scopeId: p.ifindex });
          sys('sendto', icmpFd, pkt, pkt.length, 0, to, to.length);
          n++;
        }
      }
      return n;
    };
    return {
      send,
      close: () => {
        for (const fd of [arpFd, icmpFd]) if (fd >= 0) closeFd(fd);
      },
    };
  } catch (err) {
    for (const fd of [arpFd, icmpFd]) if (fd >= 0) closeFd(fd);
    throw err instanceof FerryError ? err : new FerryError(ErrorCode.Internal, `cannot announce from ${h.path}: ${(err as Error).message}`, { cause: err });
  }
}

/** One round of announcements from a namespace (opens and closes its own sockets). */
export function announce(h: Pick<NetnsHandle, 'path' | 'ports'>, config: NetnsConfig): number {
  const a = openAnnouncer(h, config);
  try {
    return a.send();
  } finally {
    a.close();
  }
}
