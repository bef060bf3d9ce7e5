// The workload subnet: where workloads' own addresses come from. It is a setting of the
// coordinator (the one place that hands addresses out), never a constant of the lab: a real
// cluster's workload segment is whatever its operator bridged across the hosts.
import { z } from 'zod';

export const isIpv4 = (s: string): boolean => /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(s);

export const Ipv4 = z.string().refine(isIpv4, 'an IPv4 address (a.b.c.d)');

export const ipToInt = (ip: string): number => ip.split('.').reduce((a, x) => a * 256 + Number(x), 0);
export const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** "10.77.0.0/16" split and checked: the address must be the network's own (no host bits set). */
export function parseCidr(cidr: string): { network: number; prefixLen: number; broadcast: number } | null {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || !isIpv4(m[1]!)) return null;
  const prefixLen = Number(m[2]);
  if (prefixLen < 8 || prefixLen > 30) return null;
  const size = 2 ** (32 - prefixLen);
  const network = ipToInt(m[1]!);
  if (network % size !== 0) return null;
  return { network, prefixLen, broadcast: network + size - 1 };
}

/**
 * The coordinator's `workloadNetwork`: the subnet (its prefix is the one agents put on workloads'
 * eth0, see AgentConfig.network.prefixLen), the range handed out inside it (default: every usable
 * address), and addresses on that segment that belong to the infrastructure and are never handed
 * out. Hosts' own addresses and NATS servers' addresses are refused too, without being listed here.
 */
export const WorkloadSubnet = z
  .strictObject({
    subnet: z.string().refine((s) => parseCidr(s) !== null, 'a network in CIDR form with a prefix from /8 to /30 and no host bits set, e.g. 10.77.0.0/16'),
    first: Ipv4.optional(),
    last: Ipv4.optional(),
    reserved: z.array(Ipv4).default([]),
  })
  .superRefine((v, ctx) => {
    const net = parseCidr(v.subnet);
    if (!net) return;
    for (const k of ['first', 'last'] as const) {
      const ip = v[k];
      if (ip && !(ipToInt(ip) > net.network && ipToInt(ip) < net.broadcast)) {
        ctx.addIssue({ code: 'custom', path: [k], message: `${ip} is not a usable address of ${v.subnet}` });
      }
    }
    if (v.first && v.last && ipToInt(v.first) > ipToInt(v.last)) ctx.addIssue({ code: 'custom', path: ['last'], message: `the range ends (${v.last}) before it starts (${v.first})` });
  });
export type WorkloadSubnet = z.infer<typeof WorkloadSubnet>;

/** Infrastructure addresses on the workload segment, each with what it is ("host h1's address"). */
export type InfraAddresses = Map<string, string>;

export class AddressPool {
  readonly #first: number;
  readonly #last: number;
  readonly #network: number;
  readonly #broadcast: number;

  constructor(readonly cfg: WorkloadSubnet) {
    const net = parseCidr(cfg.subnet)!;
    this.#network = net.network;
    this.#broadcast = net.broadcast;
    this.#first = cfg.first ? ipToInt(cfg.first) : net.network + 1;
    this.#last = cfg.last ? ipToInt(cfg.last) : net.broadcast - 1;
  }

  get range(): string {
    return `${intToIp(this.#first)}-${intToIp(this.#last)} of ${this.cfg.subnet}`;
  }

  /**
   * Why `ip` may not be given to a workload, or null. `infra` names other infrastructure
   * addresses (hosts, NATS servers) by what they are.
   */
  refusal(ip: string, infra: InfraAddresses = new Map()): string | null {
    if (!isIpv4(ip)) return `"${ip}" is not an IPv4 address`;
    const n = ipToInt(ip);
    if (n === this.#network) return `${ip} is the network address of the workload subnet ${this.cfg.subnet}`;
    if (n === this.#broadcast) return `${ip} is the broadcast address of the workload subnet ${this.cfg.subnet}`;
    const what = infra.get(ip) ?? (this.cfg.reserved.includes(ip) ? 'reserved for the infrastructure (coordinator config workloadNetwork.reserved)' : null);
    if (what) return `${ip} is an infrastructure address: ${what}`;
    if (n < this.#network || n > this.#broadcast) return `${ip} is outside the workload subnet ${this.cfg.subnet}`;
    if (n < this.#first || n > this.#last) return `${ip} is outside the workload range ${this.range}`;
    return null;
  }

  /** The lowest address of the range that is neither taken nor refused; null when none is left. Addresses ending in .0 or .255 are skipped. */
  allocate(taken: Iterable<string>, infra: InfraAddresses = new Map()): string | null {
    const used = new Set(taken);
    for (let n = this.#first; n <= this.#last; n++) {
      const ip = intToIp(n);
      if (n % 256 === 0 || n % 256 === 255 || used.has(ip) || this.refusal(ip, infra)) continue;
      return ip;
    }
    return null;
  }
}
