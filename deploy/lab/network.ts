// Builds and removes the lab's fabric. Every `ip` call runs inside a lab namespace (`ip -n`), and
// each veth is created inside one lab namespace with its peer placed straight into another, so
// the machine's own namespace never sees a single link.
import { LAB_PREFIX_LEN, MGMT_PREFIX_LEN, MGMT_SUBNET_PREFIX, NATS_NODES, belongsToLab, type LabLayout } from './layout.ts';
import { ip, ipMaybe, run } from './exec.ts';

async function addNamespace(name: string): Promise<void> {
  await ip(null, 'netns', 'add', name);
  await ip(name, 'link', 'set', 'lo', 'up');
}

/** A bridge that forwards at once: no STP, no forwarding delay. */
async function addBridge(ns: string, name: string): Promise<void> {
  await ip(ns, 'link', 'add', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  await ip(ns, 'link', 'set', name, 'up');
}

/** A veth from the switch's bridge `bridge` (port `port`) to `ifname` in namespace ns, with an address there. */
async function plugInto(l: LabLayout, bridge: string, port: string, ns: string, ifname: string, cidr: string | null): Promise<void> {
  await ip(l.switchNamespace, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns);
  await ip(l.switchNamespace, 'link', 'set', port, 'master', bridge, 'up');
  if (cidr) await ip(ns, 'addr', 'add', cidr, 'dev', ifname);
  await ip(ns, 'link', 'set', ifname, 'up');
}

/**
 * A host's own management address is not for its workloads: their packets arrive on br0, and the
 * host (which would otherwise accept any of its addresses on any interface) drops those sent to
 * the management network. It does not forward either (a new namespace's default).
 */
const HOST_FIREWALL = (mgmtCidr: string) => `table inet ferry_lab {
  chain input { type filter hook input priority 0; policy accept; iifname "br0" ip daddr ${mgmtCidr} drop; }
}
`;

async function buildHost(l: LabLayout, i: number): Promise<void> {
  const ns = l.hostNamespace(i);
  await addBridge(ns, 'br0');
  await ip(l.switchNamespace, 'link', 'add', l.hostName(i), 'type', 'veth', 'peer', 'name', 'uplink', 'netns', ns);
  await ip(l.switchNamespace, 'link', 'set', l.hostName(i), 'master', 'sw0', 'up');
  await ip(ns, 'link', 'set', 'uplink', 'master', 'br0', 'up');
  // A bridge takes the lowest MAC of its ports unless given one: a workload's veth joining and
  // leaving would change the host's MAC under its peers' ARP caches (connections to it then
  // stall until their entries expire). Pinned to the uplink's.
  const mac = (JSON.parse(await ip(ns, '-j', 'link', 'show', 'uplink')) as { address: string }[])[0]!.address;
  await ip(ns, 'link', 'set', 'br0', 'address', mac);
  await ip(ns, 'addr', 'add', `${l.hostFabricAddress(i)}/${LAB_PREFIX_LEN}`, 'dev', 'br0');
  await plugInto(l, 'mgmt0', `m-${l.hostName(i)}`, ns, 'mgmt', `${l.hostAddress(i)}/${MGMT_PREFIX_LEN}`);
  await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: HOST_FIREWALL(`${MGMT_SUBNET_PREFIX}.0/${MGMT_PREFIX_LEN}`) });
}

export async function buildFabric(l: LabLayout, hosts: number): Promise<void> {
  const nodes = Array.from({ length: NATS_NODES }, (_, k) => k + 1);
  const hostIds = Array.from({ length: hosts }, (_, k) => k + 1);
  await Promise.all([l.switchNamespace, l.clientNamespace, ...nodes.map(l.natsNamespace), ...hostIds.map(l.hostNamespace)].map(addNamespace));
  // The fabric's switch has no address of its own: nothing of the control plane is on the fabric.
  await addBridge(l.switchNamespace, 'sw0');
  await addBridge(l.switchNamespace, 'mgmt0');
  await ip(l.switchNamespace, 'addr', 'add', `${l.controlAddress}/${MGMT_PREFIX_LEN}`, 'dev', 'mgmt0');
  // The client is the operator's seat: on both networks (the CLI talks to NATS, test clients to workloads).
  await plugInto(l, 'sw0', 'client', l.clientNamespace, 'eth0', `${l.clientAddress}/${LAB_PREFIX_LEN}`);
  await plugInto(l, 'mgmt0', 'm-client', l.clientNamespace, 'mgmt', `${l.clientMgmtAddress}/${MGMT_PREFIX_LEN}`);
  await Promise.all([
    ...nodes.map((n) => plugInto(l, 'mgmt0', `m-nats${n}`, l.natsNamespace(n), 'mgmt', `${l.natsAddress(n)}/${MGMT_PREFIX_LEN}`)),
    ...hostIds.map((i) => buildHost(l, i)),
  ]);
}

/** Every namespace of this lab that exists now, including any a crashed run left behind. */
export async function labNamespaces(l: LabLayout): Promise<string[]> {
  const out = await ipMaybe(null, '-j', 'netns', 'list');
  const list = out.trim() ? (JSON.parse(out) as { name: string }[]) : [];
  return list.map((n) => n.name).filter((n) => belongsToLab(l.name, n));
}

/** Deleting a namespace removes every link inside it; veth peers in other namespaces go too. */
export async function removeNamespaces(names: string[]): Promise<void> {
  for (const n of names) await run('ip', ['netns', 'delete', n], { allowFail: true });
}

export async function namespaceExists(name: string): Promise<boolean> {
  return (await run('ip', ['netns', 'list'], { allowFail: true })).split('\n').some((line) => line.split(' ')[0] === name);
}
