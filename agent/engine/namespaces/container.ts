// A container's own namespaces beyond its ids (namespaces.ts): its host and domain names, read
// from its root at checkpoint, and the husk a restore starts it from: pid 1 of fresh pid, mount,
// ipc, uts and time namespaces whose clocks continue from the saved values.
import { readFileSync, readlinkSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { Image, ProcessImage } from '../../../shared/image-format.ts';
import { killPid, vmRead } from '../../ffi/syscalls.ts';
import { spawnDetached } from '../process/detached.ts';
import { HuskCore, type HuskProcess, chan, inNetns, nap } from '../process/husk-core.ts';
import { findSyscallSite, injectStepOk } from '../process/inject.ts';
import { readMaps } from '../process/procfs.ts';
import type { Span } from '../memory/layout.ts';
import { CLOCK_BOOTTIME, CLOCK_MONOTONIC, clockNs } from './namespaces.ts';

/** hostname/domainname of the container (uname injected into its root, which sees its own uts namespace). */
export function readUts(root: number, p: ProcessImage): { hostname: string; domainname: string } {
  const maps = readMaps(root);
  const site = findSyscallSite(root, maps);
  const rsp = BigInt(p.threads[0] ? Buffer.from(p.threads[0].regs, 'base64').readBigUInt64LE(19 * 8) : 0n);
  const out = (rsp - 4096n) & ~15n;
  injectStepOk(root, site, 'uname', [out]);
  const b = Buffer.alloc(390);
  vmRead(root, out, b);
  const str = (off: number) => b.subarray(off, off + 65).toString('utf8').replace(/\0.*$/s, '');
  return { hostname: str(65), domainname: str(325) };
}

/**
 * A container's root: pid 1 of fresh pid, mount (own /proc), ipc, uts and time namespaces,
 * started by unshare, which stays behind as its parent on the host. The time namespace's
 * offsets (whole seconds, rounded up: what unshare takes) make its clocks continue from the
 * saved values, at most a second ahead.
 */
export function createContainerHusk(c: NonNullable<Image['container']>, avoid: readonly Span[], netns?: string): HuskCore {
  const nowMono = clockNs(CLOCK_MONOTONIC);
  const nowBoot = clockNs(CLOCK_BOOTTIME);
  // Rounded up: the clock may step forward by under a second, never backwards.
  const sec = (v: bigint) => String(v >= 0n ? (v + 999_999_999n) / 1_000_000_000n : -(-v / 1_000_000_000n));
  const offMono = sec(BigInt(c.monotonicNs) - nowMono);
  const offBoot = sec(BigInt(c.boottimeNs) - nowBoot);
  const shim = spawnDetached([...inNetns(netns), 'unshare', '--pid', '--fork', '--mount-proc', '--ipc', '--uts', '--time', '--monotonic', offMono, '--boottime', offBoot, 'sleep', '1000000']);
  let pid = 0;
  for (let i = 0; i < 400 && pid === 0; i++) {
    try {
      const kids = readFileSync(`/proc/${shim}/task/${shim}/children`, 'utf8').trim();
      const k = Number(kids.split(/\s+/)[0]);
      if (k > 0 && readlinkSync(`/proc/${k}/exe`).endsWith('/sleep')) pid = k;
    } catch {
      // not there yet
    }
    if (pid === 0) nap(0.5);
  }
  if (pid === 0) {
    try {
      killPid(shim, 9);
    } catch {
      // gone
    }
    throw new FerryError(ErrorCode.Internal, 'container husk did not start (unshare)', { details: { shim } });
  }
  const h = new HuskCore(pid);
  h.setHost(1, pid);
  h.tids.push(pid);
  try {
    h.adopt(avoid);
    setUts(h, c);
    if (chan.hasSubscribers) chan.publish({ kind: 'container', pid, shim, offsets: { monotonic: offMono, boottime: offBoot } });
    return h;
  } catch (err) {
    h.abort();
    throw err;
  }
}

/** The container's host and domain names (its root husk, which holds the uts namespace). */
export function setUts(h: HuskProcess, c: { hostname: string; domainname: string }): void {
  if (c.hostname) h.inj(h.pid, 'sethostname', [h.putStr(c.hostname), Buffer.byteLength(c.hostname)]);
  if (c.domainname && c.domainname !== '(none)') h.inj(h.pid, 'setdomainname', [h.putStr(c.domainname), Buffer.byteLength(c.domainname)]);
}
