// Builds a network namespace from a NetnsConfig: the same interface names, MACs, MTUs and
// addresses, routes, rules, permanent neighbours, sysctls and nftables ruleset; each veth's host
// end goes into the host's bridge (at once, or later with attachNetns() at cutover).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { NetRoute, NetRule, NetnsConfig } from '../../shared/netns.ts';
import { ipBatch, run, runIn } from './exec.ts';
import { type NetnsHandle, netnsHandle } from './handle.ts';
import { applySysctls } from './sysctl.ts';

export interface RebuildOptions {
  /** Name of the new namespace (/run/netns/NAME); it must not exist yet. */
  name: string;
  /** The bridge in the host namespace that takes the host ends of the veths. */
  bridge: string;
  /** The host namespace (a file); absent: the agent's own. */
  hostNetns?: string | null;
  /**
   * Put the host ends into the bridge at once (default). false: they are up but outside the
   * bridge, so nothing reaches the namespace until attachNetns() (a migration's cutover).
   */
  attach?: boolean;
}

export interface RebuildResult extends NetnsHandle {
  /** sysctls the kernel refused to set (read-only ones, missing modules). */
  refusedSysctls: string[];
  ms: number;
}

const REBUILDABLE = new Set(['loopback', 'veth', 'dummy']);

const routeLine = (r: NetRoute): string =>
  [
    'route add',
    r.type ?? '',
    r.dst,
    r.gateway ? `via ${r.gateway}` : '',
    r.dev ? `dev ${r.dev}` : '',
    r.table ? `table ${r.table}` : '',
    r.metric !== undefined ? `metric ${r.metric}` : '',
    r.scope ? `scope ${r.scope}` : '',
    r.protocol ? `proto ${r.protocol}` : '',
    r.src ? `src ${r.src}` : '',
    r.onlink ? 'onlink' : '',
  ]
    .filter(Boolean)
    .join(' ');

const ruleLine = (r: NetRule): string =>
  [
    'rule add',
    `priority ${r.priority}`,
    r.from ? `from ${r.from}` : '',
    r.to ? `to ${r.to}` : '',
    r.iif ? `iif ${r.iif}` : '',
    r.oif ? `oif ${r.oif}` : '',
    r.fwmark ? `fwmark ${r.fwmark}` : '',
    r.action && r.action !== 'to_tbl' ? r.action : r.table ? `table ${r.table}` : '',
  ]
    .filter(Boolean)
    .join(' ');

/** nft -j output loads back once the handles (which the kernel hands out) are gone. */
function withoutHandles(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutHandles);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'handle' && k !== 'metainfo').map(([k, x]) => [k, withoutHandles(x)]));
  return v;
}

/** nft reads the ruleset from a file (it cannot open a socket as /dev/stdin). */
async function loadRuleset(nsPath: string, ruleset: unknown): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-nft-'));
  try {
    const file = join(dir, 'ruleset.json');
    writeFileSync(file, JSON.stringify(withoutHandles(ruleset)));
    await runIn(nsPath, 'nft', ['-j', '-f', file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function rebuildNetns(config: NetnsConfig, opts: RebuildOptions): Promise<RebuildResult> {
  const t0 = performance.now();
  const odd = config.interfaces.find((i) => !REBUILDABLE.has(i.kind));
  if (odd) throw new FerryError(ErrorCode.Unsupported, `interface ${odd.name} of kind ${odd.kind} cannot be rebuilt (loopback, veth and dummy can)`, { details: { kind: odd.kind } });
  const hostNs = opts.hostNetns ?? null;
  const h = netnsHandle(opts.name, config, opts.bridge, hostNs);
  await run('ip', ['netns', 'add', opts.name]);
  try {
    // The host end first, with the workload end created straight inside the new namespace.
    const host: string[] = [];
    for (const p of h.ports) {
      const i = config.interfaces.find((x) => x.name === p.ifname)!;
      host.push(`link add ${p.hostVeth} mtu ${i.mtu} type veth peer name ${i.name} mtu ${i.mtu}${i.mac ? ` address ${i.mac}` : ''} netns ${opts.name}`);
      host.push(`link set ${p.hostVeth} ${opts.attach === false ? '' : `master ${opts.bridge} `}up`);
    }
    await ipBatch(hostNs, host);
    const links: string[] = [];
    for (const i of config.interfaces.filter((x) => x.kind === 'dummy')) links.push(`link add ${i.name} mtu ${i.mtu}${i.mac ? ` address ${i.mac}` : ''} type dummy`);
    await ipBatch(h.path, links);
    // sysctls before addresses: disable_ipv6, accept_dad and the like decide what addresses do.
    const refusedSysctls = await applySysctls(h.path, config.sysctls);
    const inside: string[] = [];
    for (const i of config.interfaces) {
      if (i.kind === 'loopback' && i.mtu !== 65536) inside.push(`link set ${i.name} mtu ${i.mtu}`);
      if (i.up) inside.push(`link set ${i.name} up`);
      // nodad: the address is this workload's already; a duplicate check would hold it tentative for a second.
      for (const a of i.addresses) inside.push(`addr add ${a.address}/${a.prefixLen} dev ${i.name}${a.family === 'inet6' ? ' nodad' : ''}`);
    }
    for (const n of config.neighbours) inside.push(`neigh replace ${n.address} lladdr ${n.mac} dev ${n.dev} nud permanent`);
    await ipBatch(h.path, inside);
    // Routes and rules per family: "default" and "all" mean either.
    for (const inet6 of [false, true]) {
      const fam = inet6 ? 'inet6' : 'inet';
      await ipBatch(h.path, [...config.routes.filter((r) => r.family === fam).map(routeLine), ...config.rules.filter((r) => r.family === fam).map(ruleLine)], { inet6 });
    }
    if (config.nftables) await loadRuleset(h.path, config.nftables);
    return { ...h, refusedSysctls, ms: performance.now() - t0 };
  } catch (err) {
    await removeNetns(h);
    throw err;
  }
}

/**
 * Deletes the namespace; its veths go with it, host ends included. Safe when it is gone already.
 * The host ends are deleted too in case a process still holds the namespace open.
 */
export async function removeNetns(h: Pick<NetnsHandle, 'name' | 'hostNetns' | 'ports'>): Promise<void> {
  await ipBatch(h.hostNetns, h.ports.map((p) => `link del ${p.hostVeth}`), { force: true }).catch(() => undefined);
  await run('ip', ['netns', 'delete', h.name], { allowFail: true });
}
