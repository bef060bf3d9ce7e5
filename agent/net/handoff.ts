// A workload's network namespace through a migration (docs/network.md): the source dumps the
// namespace's configuration before the freeze and locks it (peers see silence, never a reset);
// the destination rebuilds it detached from its bridge, the engine restores the sockets into it
// in repair mode, and only when the tree resumes is it attached and announced. After commit the
// source's namespace goes; on rollback the source is unlocked and the destination's removed.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { NetnsConfig } from '../../shared/netns.ts';
import { openAnnouncer, type Announcer } from './announce.ts';
import { dumpNetns } from './dump.ts';
import { netnsPath } from './exec.ts';
import type { NetnsHandle } from './handle.ts';
import { attachNetns, lockNetwork, unlockNetwork } from './lock.ts';
import { rebuildNetns, removeNetns } from './rebuild.ts';
import { removeWorkloadNetns, workloadNetns, workloadNetnsName, type WorkloadNetwork } from './workload.ts';

/** The destination's rebuilt namespace, held until resume (attach + announce) or discard. */
export interface LandedNetns {
  handle: NetnsHandle;
  config: NetnsConfig;
  announcer: Announcer;
}

export class NetworkHandoff {
  constructor(private readonly net: WorkloadNetwork | undefined) {}

  // --- source ---

  /** The configuration to rebuild, or null when the workload shares its host's namespace. */
  async dump(netns: string | null): Promise<NetnsConfig | null> {
    return netns && this.net ? dumpNetns(netns) : null;
  }

  lock(netns: string | null): void {
    if (netns && this.net) lockNetwork(workloadNetns(this.net, basename(netns)));
  }

  unlock(netns: string | null): void {
    if (netns && this.net && existsSync(netns)) unlockNetwork(workloadNetns(this.net, basename(netns)));
  }

  async removeSource(netns: string | null): Promise<void> {
    if (netns && this.net) await removeWorkloadNetns(this.net, netns);
  }

  // --- destination ---

  /** The name the workload's namespace gets here: suffixed, since lab hosts share /run/netns. */
  landingName(workload: string, migrationId: string): string | null {
    return this.net ? workloadNetnsName(this.net, workload, migrationId.slice(-8)) : null;
  }

  /** Rebuilds the namespace, detached; a leftover of an earlier attempt is replaced. */
  async land(config: NetnsConfig, name: string): Promise<LandedNetns> {
    if (!this.net) throw new Error('no workload network configured on this host');
    if (existsSync(netnsPath(name))) await removeWorkloadNetns(this.net, name);
    const handle = await rebuildNetns(config, { name, bridge: this.net.bridge, attach: false });
    // Opened now, before anything is frozen or resumed: the announcement then costs one send.
    return { handle, config, announcer: openAnnouncer(handle, config) };
  }

  /** A namespace landed by this agent before it restarted, found again by name. */
  landed(config: NetnsConfig, name: string): LandedNetns {
    if (!this.net) throw new Error('no workload network configured on this host');
    const handle = workloadNetns(this.net, name);
    return { handle, config, announcer: openAnnouncer(handle, config) };
  }

  /** The tree is about to run: plug the namespace into the bridge and tell the fabric where it is. */
  goLive(l: LandedNetns): void {
    attachNetns(l.handle);
    l.announcer.send();
    // Once more a moment later, for a switch that missed the first (a port just attached).
    // It may find the namespace gone (the workload ended, ENXIO): the first announcement went out,
    // and a throw here would be uncaught and end the agent.
    setTimeout(() => {
      try {
        l.announcer.send();
      } catch {
        // nothing to announce any more
      } finally {
        l.announcer.close();
      }
    }, 200).unref();
  }

  /** Removes a landed namespace (rollback), by its handle or, after a restart, by name. */
  async discard(l: LandedNetns | null, name: string | null): Promise<void> {
    if (l) {
      l.announcer.close();
      await removeNetns(l.handle);
    } else if (name && this.net && existsSync(netnsPath(name))) await removeWorkloadNetns(this.net, name);
  }
}

/** The workload's IPv4 address, as ferry ps shows it. */
export const addressOf = (c: NetnsConfig): string | undefined => c.interfaces.flatMap((i) => i.addresses).find((a) => a.family === 'inet')?.address;
