// The network namespace `ferry run` gives a workload: loopback and eth0 (a veth whose host end
// is in the host's bridge) with the workload's address, a MAC derived from it, and an on-link
// route for everything. Its handle follows from the workload's name, so stop and the migration
// steps find it again without any state of their own.
import { existsSync } from 'node:fs';
import type { AgentConfig } from '../../shared/config.ts';
import { initialNetns } from '../../shared/netns.ts';
import { netnsPath } from './exec.ts';
import { type NetnsHandle, netnsHandle } from './handle.ts';
import { rebuildNetns, removeNetns } from './rebuild.ts';

export type WorkloadNetwork = NonNullable<AgentConfig['network']>;

/** The handle of workload `name`'s namespace on this host (whether or not it exists). */
export const workloadNetns = (net: WorkloadNetwork, name: string, address = '0.0.0.0'): NetnsHandle =>
  netnsHandle(`${net.netnsPrefix}${name}`, initialNetns(address, net.prefixLen), net.bridge);

/** Creates the namespace (replacing a leftover of a crashed run) and returns its handle. */
export async function createWorkloadNetns(net: WorkloadNetwork, name: string, address: string): Promise<NetnsHandle> {
  const h = workloadNetns(net, name, address);
  if (existsSync(netnsPath(h.name))) await removeNetns(h);
  return rebuildNetns(initialNetns(address, net.prefixLen), { name: h.name, bridge: net.bridge });
}

export const removeWorkloadNetns = (net: WorkloadNetwork, name: string): Promise<void> => removeNetns(workloadNetns(net, name));
