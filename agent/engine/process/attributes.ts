// Process attributes restored into a husk: its place in the tree (children forked with their
// pids, zombies, the session and process group), working directory, umask, personality, limits,
// cgroup, root, credentials and prctl flags. Signals, timers and threads have modules of their
// own (signals.ts, timers.ts, threads.ts); collect.ts reads all of these at checkpoint.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type ProcessImage, fromHex } from '../../../shared/image-format.ts';
import { SYS } from '../../ffi/libc.ts';
import { PTEV, cont, expectStop, injectAt, loadSyscall, setSigmask, takeEvents, waitStop } from '../../ffi/ptrace.ts';
import { killPid, sys } from '../../ffi/syscalls.ts';
import { cgroup2Root } from '../../cgroups/root.ts';
import { type HuskCore, type HuskProcess, OFF_ARGS, OFF_SETTID, chan, errOf } from './husk-core.ts';
import { dropSigchld, restoreSigactions } from './signals.ts';
import { restoreItimers } from './timers.ts';

/** Makes the husk lead its own session now, before children are cloned into it. */
export function leadSession(h: HuskProcess): void {
  h.inj(h.pid, 'setsid');
  h.sessionDone = true;
}

/** Collects a child husk that was killed (its pid as this husk sees it), so the workload never waits for it. */
export function reap(h: HuskProcess, pid: number): void {
  injectAt(h.pid, h.scratch, SYS.wait4, [pid, 0, 0x40000000, 0]); // __WALL; an error means nothing to collect
  dropSigchld(h);
}

/**
 * A child of this husk that exits at once with the wait status it had when checkpointed, and
 * stays a zombie until the workload waits for it. A death by signal comes back as that signal
 * (a core-dump bit is not reproduced).
 */
export function zombie(h: HuskCore, pid: number, status: number): void {
  const child = fork(h, pid);
  const t = child.pid;
  const sig = status & 0x7f;
  // At the scratch page's syscall: exit_group, or pause until the signal it died of arrives.
  loadSyscall(t, h.scratch, sig === 0 ? SYS.exit_group : SYS.pause, sig === 0 ? [(status >> 8) & 0xff] : []);
  setSigmask(t, 0n); // forked while its parent had every signal blocked for the injection
  if (sig !== 0) killPid(t, sig);
  cont(t);
  for (;;) {
    const s = waitStop(t);
    if (s.exited || s.signaled) break;
    cont(t, s.event === 0 && s.sig === sig ? sig : 0); // that signal goes on and ends it
  }
  child.finished = true;
  dropSigchld(h);
}

/** Clones a child husk with the wanted PID out of this one; it shares the scratch address and the parked fds. */
export function fork(h: HuskCore, pid: number): HuskCore {
  const settid = Buffer.alloc(4);
  settid.writeInt32LE(pid, 0);
  h.put(OFF_SETTID, settid);
  const args = Buffer.alloc(88);
  args.writeBigUInt64LE(17n, 32);
  args.writeBigUInt64LE(h.scratch + OFF_SETTID, 64);
  args.writeBigUInt64LE(1n, 72);
  takeEvents();
  const r = injectAt(h.pid, h.scratch, SYS.clone3, [h.put(OFF_ARGS, args), 88]);
  if (r === -17n) throw new FerryError(ErrorCode.Conflict, `pid ${pid} is in use: cannot restore into it`, { details: { pid } });
  const e = errOf('injected clone3(process)', r, { pid: h.pid, child: pid });
  if (e) throw e;
  // The event carries the child's pid as the agent sees it, which differs inside a container.
  const hostPid = takeEvents().find((ev) => ev.event === PTEV.FORK)?.msg ?? pid;
  const child = h.forkedChild(hostPid, pid);
  try {
    expectStop(hostPid, { event: PTEV.STOP });
  } catch (err) {
    child.abort();
    throw err;
  }
  return child;
}

/** Back into its cgroup (v2) when that group exists here; otherwise it stays where the husk started. */
export function joinCgroup(h: HuskProcess, p: ProcessImage): void {
  const root = cgroup2Root();
  if (!root || p.cgroup === '/' || !existsSync(join(root, p.cgroup, 'cgroup.procs'))) return;
  // Born in it already (a warm husk): a move would still wait for an RCU grace period.
  if (readFileSync(`/proc/${h.pid}/cgroup`, 'utf8').match(/^0::(.*)$/m)?.[1] === p.cgroup) return;
  try {
    writeFileSync(join(root, p.cgroup, 'cgroup.procs'), String(h.pid));
  } catch (err) {
    if (chan.hasSubscribers) chan.publish({ kind: 'cgroup-not-joined', pid: h.pid, cgroup: p.cgroup, err });
  }
}

/**
 * chroot after every step that opens, maps or binds by host path (they resolve from the
 * husk's root), and before credentials drop CAP_SYS_CHROOT; the working directory was set
 * by its host path already.
 */
export function enterRoot(h: HuskProcess, p: ProcessImage): void {
  if (p.root) h.inj(h.pid, 'chroot', [h.putStr(p.root)]);
}

/** Working directory, umask, personality, signal actions, limits, interval timers, session and process group. */
export function restoreProcessState(h: HuskProcess, p: ProcessImage): void {
  const pid = h.pid;
  h.inj(pid, 'chdir', [h.putStr(p.cwd)]);
  h.inj(pid, 'umask', [p.umask]);
  h.inj(pid, 'personality', [p.personality]);
  restoreSigactions(h, p);
  const lim = Buffer.alloc(16);
  for (const l of p.rlimits) {
    lim.writeBigUInt64LE(fromHex(l.cur), 0);
    lim.writeBigUInt64LE(fromHex(l.max), 8);
    try {
      sys('prlimit64', pid, l.resource, lim, 0);
    } catch (err) {
      // Raising a hard limit needs CAP_SYS_RESOURCE; the husk keeps its own then.
      if (chan.hasSubscribers) chan.publish({ kind: 'rlimit-not-set', pid, resource: l.resource, err });
    }
  }
  restoreItimers(h, p);
  if (p.sid === p.pid) {
    if (!h.sessionDone) leadSession(h);
  } else if (p.pgid === p.pid) h.inj(pid, 'setpgid', [0, 0]);
  else if (p.pgid !== 0 && injectAt(pid, h.scratch, SYS.getpgid, [0]) !== BigInt(p.pgid)) h.inj(pid, 'setpgid', [0, p.pgid]);
}

/**
 * Credentials last among the process-wide steps: once they are dropped the husk may no longer
 * be allowed what the earlier steps needed. KEEPCAPS carries the permitted set across the uid
 * change; capset then puts back exactly the saved sets.
 */
export function restoreCreds(h: HuskProcess, p: ProcessImage): void {
  const c = p.creds;
  const pid = h.pid;
  const lastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  const bnd = fromHex(c.capBnd);
  for (let cap = 0; cap <= lastCap; cap++) if (((bnd >> BigInt(cap)) & 1n) === 0n) h.inj(pid, 'prctl', [24, cap]); // PR_CAPBSET_DROP
  const groups = Buffer.alloc(Math.max(4, c.groups.length * 4));
  c.groups.forEach((g, i) => groups.writeUInt32LE(g, i * 4));
  h.inj(pid, 'setgroups', [c.groups.length, h.put(OFF_ARGS, groups)]);
  h.inj(pid, 'setresgid', [c.gids[0]!, c.gids[1]!, c.gids[2]!]);
  h.inj(pid, 'setfsgid', [c.gids[3]!]);
  h.inj(pid, 'prctl', [8, 1]); // PR_SET_KEEPCAPS
  h.inj(pid, 'setresuid', [c.uids[0]!, c.uids[1]!, c.uids[2]!]);
  h.inj(pid, 'setfsuid', [c.uids[3]!]);
  h.inj(pid, 'prctl', [8, 0]);
  const data = Buffer.alloc(8 + 24);
  data.writeUInt32LE(0x20080522, 0); // _LINUX_CAPABILITY_VERSION_3, pid 0
  const sets = [fromHex(c.capEff), fromHex(c.capPrm), fromHex(c.capInh)];
  for (let half = 0; half < 2; half++) sets.forEach((v, i) => data.writeUInt32LE(Number((v >> BigInt(32 * half)) & 0xffffffffn), 8 + half * 12 + i * 4));
  const hdr = h.put(OFF_ARGS, data);
  h.inj(pid, 'capset', [hdr, hdr + 8n]);
  const amb = fromHex(c.capAmb);
  for (let cap = 0; cap <= lastCap; cap++) if (((amb >> BigInt(cap)) & 1n) !== 0n) h.inj(pid, 'prctl', [47, 2, cap, 0, 0]); // PR_CAP_AMBIENT_RAISE
  if (c.noNewPrivs) h.inj(pid, 'prctl', [38, 1, 0, 0, 0]);
}

/**
 * prctl state and membarrier registrations, after the credentials: a credential change clears
 * the parent-death signal and resets the dumpable flag.
 */
export function restoreProcessFlags(h: HuskProcess, p: ProcessImage): void {
  const pid = h.pid;
  if (p.pdeathsig !== 0) h.inj(pid, 'prctl', [1, p.pdeathsig]); // PR_SET_PDEATHSIG
  const mb = { 'private-expedited': 16, 'private-expedited-sync-core': 64, 'private-expedited-rseq': 256 } as const;
  for (const r of p.membarrier ?? []) h.inj(pid, 'membarrier', [mb[r], 0, 0]);
  if (!p.prctl) return;
  if (p.prctl.subreaper) h.inj(pid, 'prctl', [36, 1]); // PR_SET_CHILD_SUBREAPER
  if (p.prctl.thpDisable) h.inj(pid, 'prctl', [41, 1, 0, 0, 0]); // PR_SET_THP_DISABLE
  // 2 (suid_dumpable) cannot be set; the credential change above already gave this host's value.
  if (p.prctl.dumpable === 0 || p.prctl.dumpable === 1) h.inj(pid, 'prctl', [4, p.prctl.dumpable]); // PR_SET_DUMPABLE
}
