// Reads a network namespace's configuration (interfaces, addresses, routes, rules, permanent
// neighbours, sysctls, nftables) into a NetnsConfig that rebuildNetns() recreates elsewhere.
// Only configuration: what the kernel generates by itself (connected and local routes, link-
// local IPv6 addresses, the three default rules) is left out because a rebuild regenerates it.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { NetAddress, NetInterface, NetNeighbour, NetRoute, NetRule, NetnsConfig } from '../../shared/netns.ts';
import { ipJson, runIn } from './exec.ts';
import { dumpSysctls } from './sysctl.ts';

interface IpLink {
  ifname: string;
  flags: string[];
  mtu: number;
  link_type: string;
  address?: string;
  linkinfo?: { info_kind?: string };
}
interface IpAddr {
  ifname: string;
  addr_info: { family: 'inet' | 'inet6'; local: string; prefixlen: number; scope?: string; dynamic?: boolean }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  metric?: number;
  scope?: string;
  protocol?: string;
  type?: string;
  prefsrc?: string;
  flags?: string[];
}
interface IpRule {
  priority: number;
  src?: string;
  srclen?: number;
  dst?: string;
  dstlen?: number;
  iifname?: string;
  oifname?: string;
  fwmark?: string;
  table?: string;
  action?: string;
}
interface IpNeigh {
  dst: string;
  dev: string;
  lladdr?: string;
}

const DEFAULT_RULES = new Set(['0 local', '32766 main', '32767 default']);
const family = (ip: string): 'inet' | 'inet6' => (ip.includes(':') ? 'inet6' : 'inet');

/** Addresses the kernel adds by itself: loopback's, and IPv6 link-local ones (derived from the MAC, which travels). */
const automatic = (ifname: string, a: IpAddr['addr_info'][number]): boolean =>
  (ifname === 'lo' && (a.local === '127.0.0.1' || a.local === '::1')) || (a.family === 'inet6' && a.local.startsWith('fe80:')) || a.dynamic === true;

function interfaces(links: IpLink[], addrs: IpAddr[]): NetInterface[] {
  return links.map((l) => {
    const kind = l.link_type === 'loopback' ? 'loopback' : (l.linkinfo?.info_kind ?? l.link_type);
    const info = addrs.find((a) => a.ifname === l.ifname)?.addr_info ?? [];
    const addresses: NetAddress[] = info
      .filter((a) => !automatic(l.ifname, a))
      .map((a) => ({ family: a.family, address: a.local, prefixLen: a.prefixlen, ...(a.scope ? { scope: a.scope } : {}) }));
    return { name: l.ifname, kind, mac: kind === 'loopback' ? null : (l.address ?? null), mtu: l.mtu, up: l.flags.includes('UP'), addresses };
  });
}

function routes(fam: 'inet' | 'inet6', list: IpRoute[]): NetRoute[] {
  return list
    .filter((r) => r.table !== 'local' && r.protocol !== 'kernel')
    .map((r) => ({
      family: fam,
      dst: r.dst,
      ...(r.gateway ? { gateway: r.gateway } : {}),
      ...(r.dev ? { dev: r.dev } : {}),
      ...(r.table && r.table !== 'main' ? { table: r.table } : {}),
      ...(r.metric !== undefined ? { metric: r.metric } : {}),
      ...(r.scope && r.scope !== 'global' ? { scope: r.scope } : {}),
      ...(r.protocol && r.protocol !== 'boot' ? { protocol: r.protocol } : {}),
      ...(r.type && r.type !== 'unicast' ? { type: r.type } : {}),
      ...(r.prefsrc ? { src: r.prefsrc } : {}),
      ...(r.flags?.includes('onlink') ? { onlink: true } : {}),
    }));
}

function rules(fam: 'inet' | 'inet6', list: IpRule[]): NetRule[] {
  const prefix = (a: string | undefined, len: number | undefined) => (a === undefined || a === 'all' ? undefined : len === undefined ? a : `${a}/${len}`);
  return list
    .filter((r) => !(DEFAULT_RULES.has(`${r.priority} ${r.table}`) && (r.src ?? 'all') === 'all' && r.dst === undefined))
    .map((r) => {
      const out: NetRule = { family: fam, priority: r.priority };
      const from = prefix(r.src, r.srclen);
      const to = prefix(r.dst, r.dstlen);
      if (from) out.from = from;
      if (to) out.to = to;
      if (r.iifname) out.iif = r.iifname;
      if (r.oifname) out.oif = r.oifname;
      if (r.fwmark) out.fwmark = r.fwmark;
      if (r.table) out.table = r.table;
      if (r.action) out.action = r.action;
      return out;
    });
}

/** The ruleset, or null when the namespace has no table (nft -j always reports its own metainfo). */
async function nftRuleset(nsPath: string): Promise<unknown> {
  const out = await runIn(nsPath, 'nft', ['-j', 'list', 'ruleset']);
  const doc = JSON.parse(out) as { nftables?: Record<string, unknown>[] };
  return (doc.nftables ?? []).some((e) => !('metainfo' in e)) ? doc : null;
}

/** The configuration of the network namespace of process `target` (a pid) or at a namespace file. */
export async function dumpNetns(target: number | string): Promise<NetnsConfig> {
  const ns = typeof target === 'number' ? `/proc/${target}/ns/net` : target;
  try {
    const [links, addrs, r4, r6, rules4, rules6, neigh, sysctls, nftables] = await Promise.all([
      ipJson<IpLink>(ns, ['-d', 'link']),
      ipJson<IpAddr>(ns, ['addr']),
      ipJson<IpRoute>(ns, ['-4', 'route', 'show', 'table', 'all']),
      ipJson<IpRoute>(ns, ['-6', 'route', 'show', 'table', 'all']),
      ipJson<IpRule>(ns, ['-4', 'rule']),
      ipJson<IpRule>(ns, ['-6', 'rule']),
      ipJson<IpNeigh>(ns, ['neigh', 'show', 'nud', 'permanent']),
      dumpSysctls(ns),
      nftRuleset(ns),
    ]);
    const neighbours: NetNeighbour[] = neigh.filter((n) => n.lladdr).map((n) => ({ family: family(n.dst), address: n.dst, mac: n.lladdr!, dev: n.dev }));
    return {
      interfaces: interfaces(links, addrs),
      routes: [...routes('inet', r4), ...routes('inet6', r6)],
      rules: [...rules('inet', rules4), ...rules('inet6', rules6)],
      neighbours,
      sysctls,
      nftables,
    };
  } catch (err) {
    throw new FerryError(ErrorCode.Syscall, `cannot read the network namespace ${ns}: ${(err as Error).message}`, { cause: err, details: { netns: ns } });
  }
}
