// The network namespace `ferry run` gives a workload: loopback and eth0 (a veth whose host end
// is in the host's bridge) with the workload's address, a MAC derived from it, and an on-link
// route for everything. Its handle follows from the workload's name, so stop and the migration
// steps find it again without any state of their own.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { AgentConfig } from '../../shared/config.ts';
import { initialNetns } from '../../shared/netns.ts';
import { netnsPath } from './exec.ts';
import { type NetnsHandle, netnsHandle } from './handle.ts';
import { rebuildNetns, removeNetns } from './rebuild.ts';

export type WorkloadNetwork = NonNullable<AgentConfig['network']>;

/**
 * The name of a workload's namespace: <prefix><workload>, and with a suffix for a second one on
 * the same machine (a migration's destination while the source's still exists, e.g. the
 * migration id; the lab's hosts share one machine).
 */
export const workloadNetnsName = (net: WorkloadNetwork, workload: string, suffix?: string): string => `${net.netnsPrefix}${workload}${suffix ? `-${suffix}` : ''}`;

/** The handle of the workload namespace `nsName` on this host (whether or not it exists): one eth0 veth in the host's bridge. */
export const workloadNetns = (net: WorkloadNetwork, nsName: string): NetnsHandle => netnsHandle(nsName, initialNetns('0.0.0.0', net.prefixLen), net.bridge);

/** Creates workload `name`'s namespace (replacing a leftover of a crashed run) and returns its handle. */
export async function createWorkloadNetns(net: WorkloadNetwork, name: string, address: string): Promise<NetnsHandle> {
  const nsName = workloadNetnsName(net, name);
  if (existsSync(netnsPath(nsName))) await removeNetns(workloadNetns(net, nsName));
  return rebuildNetns(initialNetns(address, net.prefixLen), { name: nsName, bridge: net.bridge });
}

/** Removes a workload namespace given by its file or name, with its veth. */
export const removeWorkloadNetns = (net: WorkloadNetwork, netns: string): Promise<void> => removeNetns(workloadNetns(net, basename(netns)));
