// Raw IP sockets (SOCK_RAW over IPv4/IPv6): what they hold beyond a UDP socket's state is a
// few protocol options (header inclusion, checksum offset, the ICMP type filter), carried here.
// Queued packets are dropped, as for UDP. A socket filter cannot be put back exactly, so a raw
// socket with one is refused.
import type { RawOpts } from '../../../shared/image-format.ts';
import { SYS, libc } from '../../ffi/libc.ts';
import { AF, IPPROTO, SOL, getIntOpt, getOpt, setIntOpt, setOpt } from '../../ffi/sockets.ts';
import { check } from '../../ffi/syscalls.ts';

const IP_HDRINCL = 3;
const ICMP_FILTER = 1;
const IPV6_CHECKSUM = 7;
const ICMPV6_FILTER = 1;
const SO_GET_FILTER = 26;

/** Instructions of the classic BPF filter attached to the socket (0: none). */
export function filterLength(s: number): number {
  const len = Buffer.alloc(4); // optlen 0: the kernel answers with the number of instructions
  check('getsockopt', () => libc.syscall(SYS.getsockopt, s, SOL.SOCKET, SO_GET_FILTER, null, len, 0), { fd: s });
  return len.readUInt32LE(0);
}

/** Why this raw socket cannot be carried, or null. */
export function rawProblem(s: number): string | null {
  const n = filterLength(s);
  return n > 0 ? `raw socket with a socket filter (${n} BPF instructions), which is not carried` : null;
}

export function dumpRawOpts(s: number, family: number, protocol: number): RawOpts {
  if (family === AF.INET6) {
    const o: RawOpts = { checksum: getIntOpt(s, SOL.IPV6, IPV6_CHECKSUM) };
    if (protocol === IPPROTO.ICMPV6) o.icmpFilter = getOpt(s, SOL.ICMPV6, ICMPV6_FILTER, 32).toString('hex');
    return o;
  }
  const o: RawOpts = { hdrincl: getIntOpt(s, SOL.IP, IP_HDRINCL) !== 0 };
  if (protocol === IPPROTO.ICMP) o.icmpFilter = getOpt(s, SOL.RAW, ICMP_FILTER, 4).toString('hex');
  return o;
}

export function applyRawOpts(s: number, family: number, o: RawOpts): void {
  if (o.hdrincl !== undefined) setIntOpt(s, SOL.IP, IP_HDRINCL, o.hdrincl ? 1 : 0);
  // An ICMPv6 socket's checksum offset is fixed by the kernel (setting it is EINVAL).
  if (o.checksum !== undefined && o.icmpFilter === undefined) setIntOpt(s, SOL.IPV6, IPV6_CHECKSUM, o.checksum);
  if (o.icmpFilter !== undefined) setOpt(s, family === AF.INET6 ? SOL.ICMPV6 : SOL.RAW, family === AF.INET6 ? ICMPV6_FILTER : ICMP_FILTER, Buffer.from(o.icmpFilter, 'hex'));
}
