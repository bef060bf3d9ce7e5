// Builds and removes the lab's fabric. Every `ip` call runs inside a lab namespace (`ip -n`), and
// each veth is created inside one lab namespace with its peer placed straight into another, so
// the machine's own namespace never sees a single link.
import { LAB_PREFIX_LEN, MGMT_PREFIX_LEN, MGMT_SUBNET_PREFIX, NATS_NODES, belongsToLab, type LabLayout } from './layout.ts';
import { macForAddress } from '../../shared/netns.ts';
import { ipMaybe, run } from './exec.ts';

/**
 * A host's own management address is not for its workloads: their packets arrive on br0, and the
 * host (which would otherwise accept any of its addresses on any interface) drops those sent to
 * the management network. It does not forward either (a new namespace's default).
 */
const HOST_FIREWALL = `table inet ferry_lab {
  chain input { type filter hook input priority 0; policy accept; iifname "br0" ip daddr ${MGMT_SUBNET_PREFIX}.0/${MGMT_PREFIX_LEN} drop; }
}
`;

/** Runs `ip` commands as one batch inside a namespace (one process instead of one per command). */
export const ipBatch = (ns: string | null, lines: string[]) => run('ip', [...(ns ? ['-n', ns] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });

/** A bridge that forwards at once: no STP, no forwarding delay. */
export const bridge = (name: string, mac?: string) => [
  `link add ${name} ${mac ? `address ${mac} ` : ''}type bridge stp_state 0 forward_delay 0`,
  `link set ${name} up`,
];

/** A veth from a switch bridge (port `port`) to `ifname` in namespace ns. */
export const plug = (bridgeName: string, port: string, ns: string, ifname: string, mac?: string) => [
  `link add ${port} type veth peer name ${ifname} ${mac ? `address ${mac} ` : ''}netns ${ns}`,
  `link set ${port} master ${bridgeName} up`,
];

/** Inside the plugged namespace: the interface up with its address. */
export const endpoint = (ifname: string, cidr: string) => [`addr add ${cidr} dev ${ifname}`, `link set ${ifname} up`];

export async function buildFabric(l: LabLayout, hosts: number): Promise<void> {
  const nodes = Array.from({ length: NATS_NODES }, (_, k) => k + 1);
  const hostIds = Array.from({ length: hosts }, (_, k) => k + 1);
  const namespaces = [l.switchNamespace, l.clientNamespace, ...nodes.map(l.natsNamespace), ...hostIds.map(l.hostNamespace)];
  await ipBatch(null, namespaces.map((n) => `netns add ${n}`));
  // A bridge takes the lowest MAC of its ports unless given one: a workload's veth joining and
  // leaving would change the host's MAC under its peers' ARP caches (connections to it then
  // stall until their entries expire). A host's br0 and uplink share one, from its fabric address.
  const hostMac = (i: number) => macForAddress(l.hostFabricAddress(i));
  // The fabric's switch (sw0) has no address of its own: nothing of the control plane is on the
  // fabric. The management switch (mgmt0) carries the coordinators' address. The client is the
  // operator's seat, on both: the CLI talks to NATS, test clients to workloads.
  await ipBatch(l.switchNamespace, [
    'link set lo up',
    ...bridge('sw0'),
    ...bridge('mgmt0'),
    `addr add ${l.controlAddress}/${MGMT_PREFIX_LEN} dev mgmt0`,
    ...plug('sw0', 'client', l.clientNamespace, 'eth0'),
    ...plug('mgmt0', 'm-client', l.clientNamespace, 'mgmt'),
    ...nodes.flatMap((n) => plug('mgmt0', `m-nats${n}`, l.natsNamespace(n), 'mgmt')),
    ...hostIds.flatMap((i) => [...plug('sw0', l.hostName(i), l.hostNamespace(i), 'uplink', hostMac(i)), ...plug('mgmt0', `m-${l.hostName(i)}`, l.hostNamespace(i), 'mgmt')]),
  ]);
  await Promise.all([
    ipBatch(l.clientNamespace, ['link set lo up', ...endpoint('eth0', `${l.clientAddress}/${LAB_PREFIX_LEN}`), ...endpoint('mgmt', `${l.clientMgmtAddress}/${MGMT_PREFIX_LEN}`)]),
    ...nodes.map((n) => ipBatch(l.natsNamespace(n), ['link set lo up', ...endpoint('mgmt', `${l.natsAddress(n)}/${MGMT_PREFIX_LEN}`)])),
    ...hostIds.map(async (i) => {
      const ns = l.hostNamespace(i);
      await ipBatch(ns, [
        'link set lo up',
        ...bridge('br0', hostMac(i)),
        'link set uplink master br0 up',
        `addr add ${l.hostFabricAddress(i)}/${LAB_PREFIX_LEN} dev br0`,
        ...endpoint('mgmt', `${l.hostAddress(i)}/${MGMT_PREFIX_LEN}`),
      ]);
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: HOST_FIREWALL });
    }),
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
