// Builds and removes the lab's fabric. Every `ip` call runs inside a lab namespace (`ip -n`), and
// each veth is created inside one lab namespace with its peer placed straight into another, so
// the machine's own namespace never sees a single link.
import { LAB_PREFIX_LEN, belongsToLab, type LabLayout } from './layout.ts';
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

export async function buildFabric(l: LabLayout, hosts: number): Promise<void> {
  await addNamespace(l.switchNamespace);
  await addBridge(l.switchNamespace, 'sw0');
  await ip(l.switchNamespace, 'addr', 'add', `${l.controlAddress}/${LAB_PREFIX_LEN}`, 'dev', 'sw0');

  await addNamespace(l.clientNamespace);
  await ip(l.switchNamespace, 'link', 'add', 'client', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', l.clientNamespace);
  await ip(l.switchNamespace, 'link', 'set', 'client', 'master', 'sw0', 'up');
  await ip(l.clientNamespace, 'addr', 'add', `${l.clientAddress}/${LAB_PREFIX_LEN}`, 'dev', 'eth0');
  await ip(l.clientNamespace, 'link', 'set', 'eth0', 'up');

  for (let i = 1; i <= hosts; i++) {
    const ns = l.hostNamespace(i);
    const port = l.hostName(i);
    await addNamespace(ns);
    await addBridge(ns, 'br0');
    await ip(l.switchNamespace, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', ns);
    await ip(l.switchNamespace, 'link', 'set', port, 'master', 'sw0', 'up');
    await ip(ns, 'link', 'set', 'uplink', 'master', 'br0', 'up');
    // A bridge takes the lowest MAC of its ports unless given one: a workload's veth joining and
    // leaving would change the host's MAC under its peers' ARP caches (connections to it then
    // stall until their entries expire). Pinned to the uplink's.
    const mac = (JSON.parse(await ip(ns, '-j', 'link', 'show', 'uplink')) as { address: string }[])[0]!.address;
    await ip(ns, 'link', 'set', 'br0', 'address', mac);
    await ip(ns, 'addr', 'add', `${l.hostAddress(i)}/${LAB_PREFIX_LEN}`, 'dev', 'br0');
  }
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
