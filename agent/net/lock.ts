// The network lock and the cutover. Locked, a workload's namespace is cut off at the host ends
// of its veths (set down): peers see silence, never a reset (a down link also silences ARP),
// and nothing the frozen sockets would still acknowledge can reach them. At cutover the
// destination's namespace, built with its host ends up but outside the bridge, joins the bridge.
// All of it is ioctls on one socket in the host namespace: well under a millisecond.
import diagnostics_channel from 'node:diagnostics_channel';
import type { NetnsHandle } from './handle.ts';
import { bridgePort, setLinkUp, withControlSocket } from './link.ts';

const chan = diagnostics_channel.channel('ferry:net');

type Ports = Pick<NetnsHandle, 'name' | 'bridge' | 'hostNetns' | 'ports'>;

function eachPort(h: Ports, what: string, fn: (s: number, p: NetnsHandle['ports'][number]) => void): number {
  const t0 = performance.now();
  withControlSocket(h.hostNetns, (s) => {
    for (const p of h.ports) fn(s, p);
  });
  const ms = performance.now() - t0;
  if (chan.hasSubscribers) chan.publish({ kind: what, netns: h.name, ms });
  return ms;
}

/** Silences the namespace: every host end down. Returns how long it took (ms). */
export const lockNetwork = (h: Ports): number => eachPort(h, 'locked', (s, p) => setLinkUp(s, p.hostVeth, false));

/** Undoes lockNetwork (a migration rolled back: the source carries on). */
export const unlockNetwork = (h: Ports): number => eachPort(h, 'unlocked', (s, p) => setLinkUp(s, p.hostVeth, true));

/** Cutover on the destination: the host ends join the bridge (and are up). */
export const attachNetns = (h: Ports): number =>
  eachPort(h, 'attached', (s, p) => {
    setLinkUp(s, p.hostVeth, true);
    bridgePort(s, h.bridge, p.hostVeth, true);
  });

/** Takes the host ends out of the bridge again (a destination that must not answer after all). */
export const detachNetns = (h: Ports): number => eachPort(h, 'detached', (s, p) => bridgePort(s, h.bridge, p.hostVeth, false));
