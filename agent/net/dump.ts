// Reads a network namespace's configuration (interfaces, addresses, routes, rules, permanent
// neighbours, sysctls, nftables) into a NetnsConfig that rebuildNetns() recreates elsewhere.
// Only configuration: what the kernel generates by itself (connected and local routes, link-
// local IPv6 addresses, the three default rules) is left out because a rebuild regenerates it.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { NetAddress, NetInterface, NetNeighbour, NetRoute, NetRule, NetnsConfig } from '../../shared/netns.ts';
import { randomBytes } from 'node:crypto';
import { runIn } from './exec.ts';
import { SYSCTL_READ, sysctlsChanged } from './sysctl.ts';

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
function nftRuleset(out: string): unknown {
  const doc = JSON.parse(out) as { nftables?: Record<string, unknown>[] };
  return (doc.nftables ?? []).some((e) => !('metainfo' in e)) ? doc : null;
}

/** What one dump reads, in order: each command's output comes back as one part. */
const READS: readonly (readonly string[])[] = [
  ['ip', '-j', '-d', 'link'],
  ['ip', '-j', 'addr'],
  ['ip', '-j', '-4', 'route', 'show', 'table', 'all'],
  ['ip', '-j', '-6', 'route', 'show', 'table', 'all'],
  ['ip', '-j', '-4', 'rule'],
  ['ip', '-j', '-6', 'rule'],
  ['ip', '-j', 'neigh', 'show', 'nud', 'permanent'],
  ['nft', '-j', 'list', 'ruleset'],
  ['sh', '-c', SYSCTL_READ],
];

/**
 * Every read in one process inside the namespace: a spawn from the agent blocks its event loop
 * for a fork and an exec (10-30 ms), and pre-copy dumps the namespace every round while pages go.
 * Each part ends with a marker line carrying the command's exit code.
 */
async function readAll(ns: string): Promise<string[]> {
  const marker = `ferry-netns-part-${randomBytes(6).toString('hex')}`;
  const quote = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  const script = READS.map((argv) => `${argv.map(quote).join(' ')}; printf '\\n${marker} %d\\n' $?`).join('\n');
  const out = await runIn(ns, 'sh', ['-c', script]);
  const parts = out.split(`\n${marker} `);
  const texts: string[] = [parts[0]!];
  for (let i = 1; i < parts.length; i++) {
    const nl = parts[i]!.indexOf('\n');
    const code = Number(parts[i]!.slice(0, nl < 0 ? undefined : nl));
    const argv = READS[i - 1]!;
    if (code !== 0) throw new FerryError(ErrorCode.Syscall, `${argv.join(' ')} in ${ns}: exit code ${code}`, { details: { call: argv[0], args: argv.slice(1) } });
    if (i < parts.length - 1) texts.push(nl < 0 ? '' : parts[i]!.slice(nl + 1));
  }
  if (texts.length !== READS.length) throw new FerryError(ErrorCode.Syscall, `reading the network namespace ${ns}: ${texts.length} of ${READS.length} parts came back`);
  return texts;
}

const json = <T>(text: string): T[] => (text.trim() ? (JSON.parse(text) as T[]) : []);

/** The configuration of the network namespace of process `target` (a pid) or at a namespace file. */
export async function dumpNetns(target: number | string): Promise<NetnsConfig> {
  const ns = typeof target === 'number' ? `/proc/${target}/ns/net` : target;
  try {
    const [tLinks, tAddrs, tR4, tR6, tRules4, tRules6, tNeigh, tNft, tSysctl] = await readAll(ns);
    const links = json<IpLink>(tLinks!);
    const addrs = json<IpAddr>(tAddrs!);
    const [r4, r6] = [json<IpRoute>(tR4!), json<IpRoute>(tR6!)];
    const [rules4, rules6] = [json<IpRule>(tRules4!), json<IpRule>(tRules6!)];
    const neigh = json<IpNeigh>(tNeigh!);
    const nftables = nftRuleset(tNft!);
    const sysctls = await sysctlsChanged(tSysctl!);
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
