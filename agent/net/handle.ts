// How a workload's network namespace hangs off its host: each of its veth interfaces has a host
// end, named from the namespace and interface names (stable, at most 15 characters), that sits
// in the host's bridge. A handle names all of it, so lock, attach and remove need nothing else.
import { createHash } from 'node:crypto';
import type { NetnsConfig } from '../../shared/netns.ts';
import { netnsPath } from './exec.ts';

export interface NetnsHandle {
  /** The namespace's name (/run/netns/NAME) and file. */
  name: string;
  path: string;
  /** The bridge in the host namespace that takes the host ends. */
  bridge: string;
  /** The host namespace's file; null: the agent's own. */
  hostNetns: string | null;
  /** One per veth interface of the namespace: its name inside, its host end, its MAC. */
  ports: { ifname: string; hostVeth: string; mac: string | null }[];
}

export const hostVethName = (nsName: string, ifname: string): string => `fv${createHash('sha1').update(`${nsName}/${ifname}`).digest('hex').slice(0, 10)}`;

/** The handle of a namespace built from `config` under `name`. */
export function netnsHandle(name: string, config: NetnsConfig, bridge: string, hostNetns: string | null = null): NetnsHandle {
  return {
    name,
    path: netnsPath(name),
    bridge,
    hostNetns,
    ports: config.interfaces.filter((i) => i.kind === 'veth').map((i) => ({ ifname: i.name, hostVeth: hostVethName(name, i.name), mac: i.mac })),
  };
}
