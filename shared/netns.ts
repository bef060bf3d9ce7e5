// A workload's network namespace as configuration: what agent/net dumps on one host and
// rebuilds on another (same interface names, MACs and addresses, routes, rules, permanent
// neighbours, sysctls that differ from a fresh namespace's, the nftables ruleset). It travels
// with a migration, so it is plain JSON. Sockets are not part of it: the engine carries them.
import { z } from 'zod';

export const IpFamily = z.enum(['inet', 'inet6']);

export const NetAddress = z.strictObject({
  family: IpFamily,
  address: z.string(),
  prefixLen: z.number().int().min(0).max(128),
  /** "global", "link", "host"... as `ip` names it. */
  scope: z.string().optional(),
});
export type NetAddress = z.infer<typeof NetAddress>;

export const NetInterface = z.strictObject({
  name: z.string().min(1).max(15),
  /** "loopback", "veth" (rebuilt as a veth into the host's bridge), "dummy"; other kinds are refused on rebuild. */
  kind: z.string(),
  mac: z.string().nullable(),
  mtu: z.number().int().positive(),
  up: z.boolean(),
  addresses: z.array(NetAddress),
});
export type NetInterface = z.infer<typeof NetInterface>;

export const NetRoute = z.strictObject({
  family: IpFamily,
  /** "default" or a prefix ("10.77.0.0/16"). */
  dst: z.string(),
  gateway: z.string().optional(),
  dev: z.string().optional(),
  /** Absent for the main table. */
  table: z.string().optional(),
  metric: z.number().int().optional(),
  scope: z.string().optional(),
  protocol: z.string().optional(),
  type: z.string().optional(),
  src: z.string().optional(),
  onlink: z.boolean().optional(),
});
export type NetRoute = z.infer<typeof NetRoute>;

/** A policy routing rule other than the three every namespace starts with. */
export const NetRule = z.strictObject({
  family: IpFamily,
  priority: z.number().int(),
  from: z.string().optional(),
  to: z.string().optional(),
  iif: z.string().optional(),
  oif: z.string().optional(),
  fwmark: z.string().optional(),
  table: z.string().optional(),
  action: z.string().optional(),
});
export type NetRule = z.infer<typeof NetRule>;

export const NetNeighbour = z.strictObject({ family: IpFamily, address: z.string(), mac: z.string(), dev: z.string() });
export type NetNeighbour = z.infer<typeof NetNeighbour>;

export const NetnsConfig = z.strictObject({
  interfaces: z.array(NetInterface),
  routes: z.array(NetRoute),
  rules: z.array(NetRule),
  /** Permanent entries only: learnt ones are learnt again. */
  neighbours: z.array(NetNeighbour),
  /** Keys under /proc/sys/net ("ipv4/ip_forward") whose value differs from a fresh namespace's. */
  sysctls: z.record(z.string(), z.string()),
  /** `nft -j list ruleset` output, null when the namespace has no tables. */
  nftables: z.unknown().nullable(),
});
export type NetnsConfig = z.infer<typeof NetnsConfig>;

/** A workload's MAC follows from its IPv4 address (locally administered, unicast), so it is the same on every host. */
export function macForAddress(ip: string): string {
  const b = ip.split('.').map(Number);
  return ['02', 'fe', ...b.map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

/** The namespace a new workload gets: loopback and one interface with its address, on-link in the subnet and for everything else. */
export function initialNetns(address: string, prefixLen: number, ifname = 'eth0'): NetnsConfig {
  return {
    interfaces: [
      { name: 'lo', kind: 'loopback', mac: null, mtu: 65536, up: true, addresses: [] },
      { name: ifname, kind: 'veth', mac: macForAddress(address), mtu: 1500, up: true, addresses: [{ family: 'inet', address, prefixLen }] },
    ],
    routes: [{ family: 'inet', dst: 'default', dev: ifname, scope: 'link' }],
    rules: [],
    neighbours: [],
    sysctls: {},
    nftables: null,
  };
}
