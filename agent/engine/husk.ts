// A husk is the process a restore turns into the checkpointed one: created with the saved PID,
// emptied, given the saved mappings, filled, and finally handed the saved registers. Each step
// is a method so the migration path can build and fill a husk during pre-copy and finish it
// after the freeze. This file: creating husks (plain, container, child) and the process and
// thread state (session, signals, limits, timers, credentials, threads).
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { cgroup2Root } from '../probes.ts';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type Image, type ProcessImage, type ThreadImage, type Vma, fromHex } from '../../shared/image-format.ts';
import { CLOCK_BOOTTIME, CLOCK_MONOTONIC, clockNs } from './namespaces.ts';
import { SYS } from '../ffi/libc.ts';
import { PTEV, PTO, cont, expectStop, injectAt, interrupt, loadSyscall, seize, setSigmask, takeEvents, waitStop } from '../ffi/ptrace.ts';
import { injectStep } from './inject.ts';
import { killPid, sys, vmRead } from '../ffi/syscalls.ts';
import { spawnDetached } from './detached.ts';
import { type Span } from './layout.ts';
import { readMaps, readStatus } from './procfs.ts';
import { HuskFiles } from './husk-files.ts';
import { chan, CLONE_THREAD_FLAGS, errOf, inNetns, nap, OFF_ARGS, OFF_SETTID } from './husk-core.ts';

export { protOf, resumeRegs } from './husk-core.ts';

export class Husk extends HuskFiles {
  /**
   * Starts a detached launcher, gives it a scratch page, and clones the husk out of it with the
   * wanted PID; the launcher then dies so the husk belongs to init, not to the caller.
   */
  static create(pid: number, avoid: readonly Span[], netns?: string): Husk {
    const h = new Husk(pid);
    try {
      h.spawn(avoid, netns);
      return h;
    } catch (err) {
      h.abort();
      throw err;
    }
  }

  /**
   * A container's root: pid 1 of fresh pid, mount (own /proc), ipc, uts and time namespaces,
   * started by unshare, which stays behind as its parent on the host. The time namespace's
   * offsets (whole seconds, rounded up: what unshare takes) make its clocks continue from the
   * saved values, at most a second ahead.
   */
  static createContainer(c: NonNullable<Image['container']>, avoid: readonly Span[], netns?: string): Husk {
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
    const h = new Husk(pid);
    h.hostTid.set(1, pid);
    h.tids.push(pid);
    try {
      seize(pid, PTO.TRACESYSGOOD | PTO.TRACEFORK | PTO.TRACECLONE | PTO.EXITKILL);
      interrupt(pid);
      expectStop(pid, { event: PTEV.STOP });
      h.makeScratch(pid, [...avoid, ...readMaps(pid)]);
      h.setUts(c);
      if (chan.hasSubscribers) chan.publish({ kind: 'container', pid, shim, offsets: { monotonic: offMono, boottime: offBoot } });
      return h;
    } catch (err) {
      h.abort();
      throw err;
    }
  }

  /** The container's host and domain names (its root husk, which holds the uts namespace). */
  setUts(c: { hostname: string; domainname: string }): void {
    if (c.hostname) this.inj(this.pid, 'sethostname', [this.putStr(c.hostname), Buffer.byteLength(c.hostname)]);
    if (c.domainname && c.domainname !== '(none)') this.inj(this.pid, 'setdomainname', [this.putStr(c.domainname), Buffer.byteLength(c.domainname)]);
  }

  /** Collects a child husk that was killed (its pid as this husk sees it), so the workload never waits for it. */
  reap(pid: number): void {
    injectAt(this.pid, this.scratch, SYS.wait4, [pid, 0, 0x40000000, 0]); // __WALL; an error means nothing to collect
    this.dropSigchld();
  }

  /**
   * A child of this husk that exits at once with the wait status it had when checkpointed, and
   * stays a zombie until the workload waits for it. A death by signal comes back as that signal
   * (a core-dump bit is not reproduced).
   */
  zombie(pid: number, status: number): void {
    const child = this.fork(pid);
    const t = child.pid;
    const sig = status & 0x7f;
    // At the scratch page's syscall: exit_group, or pause until the signal it died of arrives.
    loadSyscall(t, this.scratch, sig === 0 ? SYS.exit_group : SYS.pause, sig === 0 ? [(status >> 8) & 0xff] : []);
    setSigmask(t, 0n); // forked while its parent had every signal blocked for the injection
    if (sig !== 0) killPid(t, sig);
    cont(t);
    for (;;) {
      const s = waitStop(t);
      if (s.exited || s.signaled) break;
      cont(t, s.event === 0 && s.sig === sig ? sig : 0); // that signal goes on and ends it
    }
    child.finished = true;
    this.dropSigchld();
  }

  /** The SIGCHLD of an exited child husk is pending in this husk (a traced task queues even ignored signals): take it back. */
  private dropSigchld(): void {
    const b = Buffer.alloc(24);
    b.writeBigUInt64LE(1n << 16n, 0); // SIGCHLD (17)
    const set = this.put(OFF_ARGS, b);
    injectAt(this.pid, this.scratch, SYS.rt_sigtimedwait, [set, 0, set + 8n, 8]); // zero timeout: EAGAIN when none
  }

  /** Clones a child husk with the wanted PID out of this one; it shares the scratch address and the parked fds. */
  fork(pid: number): Husk {
    const settid = Buffer.alloc(4);
    settid.writeInt32LE(pid, 0);
    this.put(OFF_SETTID, settid);
    const args = Buffer.alloc(88);
    args.writeBigUInt64LE(17n, 32);
    args.writeBigUInt64LE(this.scratch + OFF_SETTID, 64);
    args.writeBigUInt64LE(1n, 72);
    takeEvents();
    const r = injectAt(this.pid, this.scratch, SYS.clone3, [this.put(OFF_ARGS, args), 88]);
    if (r === -17n) throw new FerryError(ErrorCode.Conflict, `pid ${pid} is in use: cannot restore into it`, { details: { pid } });
    const e = errOf('injected clone3(process)', r, { pid: this.pid, child: pid });
    if (e) throw e;
    // The event carries the child's pid as the agent sees it, which differs inside a container.
    const hostPid = takeEvents().find((ev) => ev.event === PTEV.FORK)?.msg ?? pid;
    const child = new Husk(hostPid);
    child.scratch = this.scratch;
    child.parkBase = this.parkBase;
    child.parked = this.parked;
    child.sessionDone = this.sessionDone;
    child.inheritsMemory = this.memoryBuilt;
    child.tids.push(hostPid);
    child.hostTid.set(pid, hostPid);
    try {
      expectStop(hostPid, { event: PTEV.STOP });
    } catch (err) {
      child.abort();
      throw err;
    }
    return child;
  }


  /** madvise flags that live on the mapping (fork and THP behaviour, core dumps), and guard regions. */
  adviseAll(vmas: readonly Vma[]): void {
    const code = { dc: 10, wf: 18, hg: 14, nh: 15, dd: 16 } as const; // DONTFORK WIPEONFORK HUGEPAGE NOHUGEPAGE DONTDUMP
    for (const v of vmas) {
      for (const g of v.guards ?? []) this.inj(this.pid, 'madvise', [fromHex(g.addr), BigInt(g.pages) * 4096n, 102]); // MADV_GUARD_INSTALL
      for (const a of v.advice ?? []) {
        const start = fromHex(v.start);
        // Best effort: e.g. HUGEPAGE is refused where THP is compiled out; the data is intact either way.
        const r = injectAt(this.pid, this.scratch, SYS.madvise, [start, fromHex(v.end) - start, code[a]]);
        if (r < 0n && chan.hasSubscribers) chan.publish({ kind: 'madvise-failed', pid: this.pid, addr: v.start, advice: a, errno: Number(-r) });
      }
    }
  }

  /** Sets one signal's disposition to SIG_DFL (0) or SIG_IGN (1): the corrupt-flag test hook (verify/corrupt.ts). */
  setDisposition(sig: number, handler: 0n | 1n): void {
    const b = Buffer.alloc(32);
    b.writeBigUInt64LE(handler, 0);
    this.inj(this.pid, 'rt_sigaction', [sig, this.put(OFF_ARGS, b), 0, 8]);
  }

  /** Back into its cgroup (v2) when that group exists here; otherwise it stays where the husk started. */
  joinCgroup(p: ProcessImage): void {
    const root = cgroup2Root();
    if (!root || p.cgroup === '/' || !existsSync(join(root, p.cgroup, 'cgroup.procs'))) return;
    try {
      writeFileSync(join(root, p.cgroup, 'cgroup.procs'), String(this.pid));
    } catch (err) {
      if (chan.hasSubscribers) chan.publish({ kind: 'cgroup-not-joined', pid: this.pid, cgroup: p.cgroup, err });
    }
  }

  /**
   * chroot after every step that opens, maps or binds by host path (they resolve from the
   * husk's root), and before credentials drop CAP_SYS_CHROOT; the working directory was set
   * by its host path already.
   */
  enterRoot(p: ProcessImage): void {
    if (p.root) this.inj(this.pid, 'chroot', [this.putStr(p.root)]);
  }

  restoreProcessState(p: ProcessImage): void {
    const pid = this.pid;
    this.inj(pid, 'chdir', [this.putStr(p.cwd)]);
    this.inj(pid, 'umask', [p.umask]);
    this.inj(pid, 'personality', [p.personality]);
    // The image's actions; a signal it has none for is default, whatever the husk started with.
    const st = readStatus(pid);
    const husks = BigInt(`0x${st.get('SigCgt') ?? '0'}`) | BigInt(`0x${st.get('SigIgn') ?? '0'}`);
    for (let sig = 1; sig <= 64; sig++) {
      if (sig === 9 || sig === 19) continue;
      if (!p.sigactions.some((a) => a.sig === sig) && ((husks >> BigInt(sig - 1)) & 1n) === 0n) continue;
      this.inj(pid, 'rt_sigaction', [sig, this.put(OFF_ARGS, sigactionBytes(p, sig)), 0, 8]);
    }
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
    for (const t of p.itimers) {
      const b = Buffer.alloc(32);
      [...t.interval, ...t.value].forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
      // A zero value would disarm it; the remaining time was real, so it fires as soon as possible.
      if (t.value[0] === 0 && t.value[1] === 0) b.writeBigInt64LE(1n, 24);
      this.inj(pid, 'setitimer', [t.which, this.put(OFF_ARGS, b), 0]);
    }
    if (p.sid === p.pid) {
      if (!this.sessionDone) this.leadSession();
    } else if (p.pgid === p.pid) this.inj(pid, 'setpgid', [0, 0]);
    else if (p.pgid !== 0 && injectAt(pid, this.scratch, SYS.getpgid, [0]) !== BigInt(p.pgid)) this.inj(pid, 'setpgid', [0, p.pgid]);
  }

  /**
   * Credentials last among the process-wide steps: once they are dropped the husk may no longer
   * be allowed what the earlier steps needed. KEEPCAPS carries the permitted set across the uid
   * change; capset then puts back exactly the saved sets.
   */
  restoreCreds(p: ProcessImage): void {
    const c = p.creds;
    const pid = this.pid;
    const lastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    const bnd = fromHex(c.capBnd);
    for (let cap = 0; cap <= lastCap; cap++) if (((bnd >> BigInt(cap)) & 1n) === 0n) this.inj(pid, 'prctl', [24, cap]); // PR_CAPBSET_DROP
    const groups = Buffer.alloc(Math.max(4, c.groups.length * 4));
    c.groups.forEach((g, i) => groups.writeUInt32LE(g, i * 4));
    this.inj(pid, 'setgroups', [c.groups.length, this.put(OFF_ARGS, groups)]);
    this.inj(pid, 'setresgid', [c.gids[0]!, c.gids[1]!, c.gids[2]!]);
    this.inj(pid, 'setfsgid', [c.gids[3]!]);
    this.inj(pid, 'prctl', [8, 1]); // PR_SET_KEEPCAPS
    this.inj(pid, 'setresuid', [c.uids[0]!, c.uids[1]!, c.uids[2]!]);
    this.inj(pid, 'setfsuid', [c.uids[3]!]);
    this.inj(pid, 'prctl', [8, 0]);
    const data = Buffer.alloc(8 + 24);
    data.writeUInt32LE(0x20080522, 0); // _LINUX_CAPABILITY_VERSION_3, pid 0
    const sets = [fromHex(c.capEff), fromHex(c.capPrm), fromHex(c.capInh)];
    for (let half = 0; half < 2; half++)
      sets.forEach((v, i) => data.writeUInt32LE(Number((v >> BigInt(32 * half)) & 0xffffffffn), 8 + half * 12 + i * 4));
    const hdr = this.put(OFF_ARGS, data);
    this.inj(pid, 'capset', [hdr, hdr + 8n]);
    const amb = fromHex(c.capAmb);
    for (let cap = 0; cap <= lastCap; cap++) if (((amb >> BigInt(cap)) & 1n) !== 0n) this.inj(pid, 'prctl', [47, 2, cap, 0, 0]); // PR_CAP_AMBIENT_RAISE
    if (c.noNewPrivs) this.inj(pid, 'prctl', [38, 1, 0, 0, 0]);
  }

  /**
   * prctl state and membarrier registrations, after the credentials: a credential change clears
   * the parent-death signal and resets the dumpable flag.
   */
  restoreProcessFlags(p: ProcessImage): void {
    const pid = this.pid;
    if (p.pdeathsig !== 0) this.inj(pid, 'prctl', [1, p.pdeathsig]); // PR_SET_PDEATHSIG
    const mb = { 'private-expedited': 16, 'private-expedited-sync-core': 64, 'private-expedited-rseq': 256 } as const;
    for (const r of p.membarrier ?? []) this.inj(pid, 'membarrier', [mb[r], 0, 0]);
    if (!p.prctl) return;
    if (p.prctl.subreaper) this.inj(pid, 'prctl', [36, 1]); // PR_SET_CHILD_SUBREAPER
    if (p.prctl.thpDisable) this.inj(pid, 'prctl', [41, 1, 0, 0, 0]); // PR_SET_THP_DISABLE
    // 2 (suid_dumpable) cannot be set; the credential change above already gave this host's value.
    if (p.prctl.dumpable === 0 || p.prctl.dumpable === 1) this.inj(pid, 'prctl', [4, p.prctl.dumpable]); // PR_SET_DUMPABLE
  }

  /**
   * Every injection into a husk ends on an int3 with all signals blocked, and the kernel resets
   * the handler of a blocked SIGTRAP it forces to SIG_DFL. So SIGTRAP's action goes in once more
   * after the last of them, through syscall stops (no trap).
   */
  restoreTrapAction(p: ProcessImage): void {
    if (!p.sigactions.some((a) => a.sig === 5)) return;
    const r = injectStep(this.pid, this.scratch, SYS.rt_sigaction, [5, this.put(OFF_ARGS, sigactionBytes(p, 5)), 0, 8]);
    const e = errOf('injected rt_sigaction(SIGTRAP)', r, { pid: this.pid });
    if (e) throw e;
  }

  /**
   * POSIX timers come back under their old ids (PR_TIMER_CREATE_RESTORE_IDS makes timer_create
   * take the id it is given); after the threads exist, so thread-directed ones find their target.
   */
  restoreTimers(p: ProcessImage): void {
    if (p.posixTimers.length === 0) return;
    const pid = this.pid;
    this.inj(pid, 'prctl', [77, 1, 0, 0, 0]);
    try {
      for (const t of p.posixTimers) {
        const sev = Buffer.alloc(64);
        sev.writeBigUInt64LE(fromHex(t.value), 0);
        sev.writeInt32LE(t.signal, 8);
        sev.writeInt32LE(t.notify, 12);
        sev.writeInt32LE(t.tid, 16);
        const sevAddr = this.put(OFF_ARGS, sev);
        const idBuf = Buffer.alloc(4);
        idBuf.writeInt32LE(t.id, 0);
        const idAddr = this.put(OFF_ARGS + 0x80n, idBuf);
        this.inj(pid, 'timer_create', [t.clockid, sevAddr, idAddr]);
        vmRead(pid, idAddr, idBuf);
        if (idBuf.readInt32LE(0) !== t.id) throw new FerryError(ErrorCode.Internal, `timer ${t.id} of pid ${pid} came back as ${idBuf.readInt32LE(0)}`);
        const idle = (v: [number, number]) => v[0] === 0 && v[1] === 0;
        if (idle(t.remaining) && idle(t.interval)) continue;
        const its = Buffer.alloc(32);
        const value = idle(t.remaining) ? [0, 1] : t.remaining;
        [t.interval[0], t.interval[1], value[0]!, value[1]!].forEach((x, i) => its.writeBigInt64LE(BigInt(x), i * 8));
        this.inj(pid, 'timer_settime', [t.id, 0, this.put(OFF_ARGS, its), 0]);
      }
    } finally {
      this.inj(pid, 'prctl', [77, 0, 0, 0, 0]);
    }
  }

  /** Creates every non-leader thread with its saved TID (injected clone3 with thread flags). */
  createThreads(p: ProcessImage): void {
    for (const t of p.threads) {
      if (t.tid === p.pid) continue;
      const settid = Buffer.alloc(4);
      settid.writeInt32LE(t.tid, 0);
      this.put(OFF_SETTID, settid);
      const args = Buffer.alloc(88);
      args.writeBigUInt64LE(CLONE_THREAD_FLAGS, 0);
      args.writeBigUInt64LE(this.scratch + OFF_SETTID, 64);
      args.writeBigUInt64LE(1n, 72);
      takeEvents();
      const r = injectAt(this.pid, this.scratch, SYS.clone3, [this.put(OFF_ARGS, args), 88]);
      if (r === -17n) throw new FerryError(ErrorCode.Conflict, `tid ${t.tid} is in use: cannot restore thread`, { details: { pid: this.pid, tid: t.tid } });
      const e = errOf('injected clone3(thread)', r, { pid: this.pid, tid: t.tid });
      if (e) throw e;
      const hostTid = takeEvents().find((ev) => ev.event === PTEV.CLONE)?.msg ?? t.tid;
      this.hostTid.set(t.tid, hostTid);
      this.tids.push(hostTid);
      expectStop(hostTid, { event: PTEV.STOP });
    }
  }

  /** Signals queued for the whole process go back into its queue (sent to itself, so any si_code is allowed). */
  queueSharedSignals(p: ProcessImage): void {
    for (const s of p.pendingShared) this.inj(this.pid, 'rt_sigqueueinfo', [p.pid, s.sig, this.put(OFF_ARGS, Buffer.from(s.siginfo, 'base64'))]);
  }

  /** Per-thread kernel state that lives outside registers and memory. */
  restoreThreadState(t: ThreadImage, p: ProcessImage): void {
    const tid = this.host(t.tid);
    // Sent by the thread to itself, with the ids it sees.
    for (const s of t.pending) this.inj(tid, 'rt_tgsigqueueinfo', [p.pid, t.tid, s.sig, this.put(OFF_ARGS, Buffer.from(s.siginfo, 'base64'))]);
    this.inj(tid, 'set_tid_address', [fromHex(t.tidAddress)]);
    if (t.robustList.head !== '0x0') this.inj(tid, 'set_robust_list', [fromHex(t.robustList.head), t.robustList.len]);
    if (t.rseq) this.inj(tid, 'rseq', [fromHex(t.rseq.ptr), t.rseq.size, 0, t.rseq.sig]);
    this.inj(tid, 'prctl', [15, this.putStr(t.comm.slice(0, 15))]); // PR_SET_NAME
    if ((t.altstack.flags & 2) === 0) {
      const ss = Buffer.alloc(24);
      ss.writeBigUInt64LE(fromHex(t.altstack.sp), 0);
      ss.writeInt32LE(t.altstack.flags & ~1, 8); // SS_ONSTACK is state, not a setting
      ss.writeBigUInt64LE(fromHex(t.altstack.size), 16);
      this.inj(tid, 'sigaltstack', [this.put(OFF_ARGS, ss), 0]);
    }
    setSigmask(tid, fromHex(t.sigmask));
  }

}

/** The kernel's struct sigaction for sig as the image has it; all zero (SIG_DFL) when it has none. */
function sigactionBytes(p: ProcessImage, sig: number): Buffer {
  const b = Buffer.alloc(32);
  const a = p.sigactions.find((x) => x.sig === sig);
  if (!a) return b;
  b.writeBigUInt64LE(fromHex(a.handler), 0);
  b.writeBigUInt64LE(fromHex(a.flags), 8);
  b.writeBigUInt64LE(fromHex(a.restorer), 16);
  b.writeBigUInt64LE(fromHex(a.mask), 24);
  return b;
}
