// The core of a husk: the process a restore turns into the checkpointed one. Here: how it is
// started (or adopted), its ids, its scratch page and the injection through it, the state that
// several resources share, and the final release. Each resource restores itself through the
// HuskProcess interface (memory/mappings.ts, files/restore-*.ts, sockets/restore.ts,
// process/attributes.ts, signals.ts, threads.ts, timers.ts); husk.ts composes them.
import diagnostics_channel from 'node:diagnostics_channel';
import { readlinkSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { InetSocketImage } from '../../../shared/image-format.ts';
import { SYS } from '../../ffi/libc.ts';
import { PTEV, PTO, detach, expectStop, getRegs, injectAt, interrupt, peek, poke, seize, takeEvents } from '../../ffi/ptrace.ts';
import { SyscallError, WALL, WNOHANG, closeFd, killPid, pidfdGetfd, pidfdOpen, sys, vmWrite, waitpid, writeFd } from '../../ffi/syscalls.ts';
import { spawnDetached } from './detached.ts';
import { type Span, findFar } from '../memory/layout.ts';
import { readMaps } from './procfs.ts';

export const chan = diagnostics_channel.channel('ferry:husk');

export const SCRATCH_SIZE = 0x10000n;
export const OFF_ARGS = 0x100n;
export const OFF_STR = 0x1000n;
export const OFF_AUXV = 0x3000n;
export const OFF_SETTID = 0x5000n;

export const PROT = { R: 1, W: 2, X: 4 } as const;
export const MAP = { SHARED: 1, PRIVATE: 2, FIXED: 0x10, ANON: 0x20, GROWSDOWN: 0x100, FIXED_NOREPLACE: 0x100000 } as const;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
export const nap = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

/** A command prefix that starts a husk inside a network namespace (nsenter execs, so the pid stays). */
export const inNetns = (netns: string | undefined): string[] => (netns ? ['nsenter', `--net=${netns}`, '--'] : []);

export function errOf(call: string, r: bigint, extra: Record<string, unknown>): SyscallError | null {
  return r < 0n && r > -4096n ? new SyscallError(call, Number(-r), extra) : null;
}

/** A shared description parked in the husk: its read and write ends (the same fd for one description), and a FIFO's O_RDWR description. */
export interface ParkedSlot {
  r: number;
  w: number;
  rw?: number;
}

/** A restored TCP connection still in repair mode: the agent's duplicate of its socket. */
export interface HeldConnection {
  fd: number;
  img: InetSocketImage;
}

/**
 * What the resource modules use of a husk: its ids, syscalls injected through its scratch page,
 * and the state that more than one resource reads or writes.
 */
export interface HuskProcess {
  /** As the agent sees it. */
  readonly pid: number;
  /** Every task of the husk as the agent sees it, the leader first. */
  readonly tids: number[];
  /** The scratch page (`syscall; int3` at its start); arguments and strings go in at the OFF_* offsets. */
  readonly scratch: bigint;
  /** The scratch area, which no mapping of the image may cover. */
  readonly scratchSpan: Span;
  /** A thread id as the image knows it -> as the agent sees it (they differ inside a container). */
  host(tid: number): number;
  setHost(tid: number, hostTid: number): void;
  /** One injected syscall in task `tid`; an error result throws. */
  inj(tid: number, name: keyof typeof SYS, args?: ReadonlyArray<bigint | number>): bigint;
  /** Bytes into the scratch page at `off`; returns their address in the husk. */
  put(off: bigint, data: Buffer): bigint;
  /** A NUL-terminated string into the scratch page's string area; returns its address. */
  putStr(s: string): bigint;
  /** First fd of the parked shared descriptions (0 when there are none). */
  parkBase: number;
  /** Per shared entry of the image: where the husk holds it (files/restore-shared.ts). */
  parked: ParkedSlot[];
  /** The husk leads its own session already. */
  sessionDone: boolean;
  /** This husk was forked from a parent whose memory was already built: it holds the parent's mappings. */
  inheritsMemory: boolean;
  /** Its memory is built: a child forked now inherits this husk's mappings. */
  memoryBuilt: boolean;
  /** Restored TCP connections, still in repair mode: made with the shared descriptions, activated by sockets/restore.ts. */
  readonly connections: HeldConnection[];
}

export class HuskCore implements HuskProcess {
  readonly tids: number[] = [];
  readonly connections: HeldConnection[] = [];
  parkBase = 0;
  parked: ParkedSlot[] = [];
  sessionDone = false;
  inheritsMemory = false;
  memoryBuilt = false;
  /** Released, or made to exit on purpose: abort() leaves it alone. */
  finished = false;
  private launcher = 0;
  private scratchAddr = 0n;
  private readonly hostTid = new Map<number, number>();

  constructor(readonly pid: number) {}

  /**
   * Starts a detached launcher, gives it a scratch page, and clones the husk out of it with the
   * wanted PID; the launcher then dies so the husk belongs to init, not to the caller.
   */
  static create(pid: number, avoid: readonly Span[], netns?: string): HuskCore {
    const h = new HuskCore(pid);
    try {
      h.spawn(avoid, netns);
      return h;
    } catch (err) {
      h.abort();
      throw err;
    }
  }

  get scratch(): bigint {
    return this.scratchAddr;
  }

  get scratchSpan(): Span {
    return { start: this.scratchAddr, end: this.scratchAddr + SCRATCH_SIZE };
  }

  host(tid: number): number {
    return this.hostTid.get(tid) ?? tid;
  }

  setHost(tid: number, hostTid: number): void {
    this.hostTid.set(tid, hostTid);
  }

  inj(tid: number, name: keyof typeof SYS, args: ReadonlyArray<bigint | number> = []): bigint {
    const r = injectAt(tid, this.scratchAddr, SYS[name], args);
    const e = errOf(`injected ${name}`, r, { pid: this.pid, tid });
    if (e) throw e;
    return r;
  }

  put(off: bigint, data: Buffer): bigint {
    vmWrite(this.pid, this.scratchAddr + off, data);
    return this.scratchAddr + off;
  }

  putStr(s: string): bigint {
    const b = Buffer.from(`${s}\0`);
    if (b.length > Number(OFF_AUXV - OFF_STR)) throw new FerryError(ErrorCode.Unsupported, `path too long for the husk: ${s.slice(0, 80)}...`);
    return this.put(OFF_STR, b);
  }

  /** A scratch page holding `syscall; int3`, made by patching the word at the task's rip for one mmap. */
  private makeScratch(tid: number, occupied: readonly Span[]): void {
    // Far from everything: a husk built during pre-copy must stay clear of mappings the workload makes meanwhile.
    this.scratchAddr = findFar(occupied, SCRATCH_SIZE);
    const rip = getRegs(tid).get('rip');
    const orig = peek(tid, rip);
    poke(tid, rip, (orig & ~0xffffffn) | 0xcc050fn); // syscall; int3
    const m = injectAt(tid, rip, SYS.mmap, [this.scratchAddr, SCRATCH_SIZE, PROT.R | PROT.W | PROT.X, MAP.PRIVATE | MAP.ANON | MAP.FIXED_NOREPLACE, -1, 0]);
    poke(tid, rip, orig);
    if (m !== this.scratchAddr) throw errOf('injected mmap(scratch)', m, { pid: tid }) ?? new FerryError(ErrorCode.Internal, 'scratch landed elsewhere');
    vmWrite(tid, this.scratchAddr, Buffer.from([0x0f, 0x05, 0xcc]));
  }

  /** netns: a network namespace file the husk starts in (its sockets are made there). */
  private spawn(avoid: readonly Span[], netns?: string): void {
    const L = spawnDetached([...inNetns(netns), 'sleep', '1000000'], { newSession: false });
    this.launcher = L;
    // The background shell job may not have exec'd yet; an interrupted pre-exec shell works too, but sleep is smaller.
    for (let i = 0; i < 200; i++) {
      try {
        if (readlinkSync(`/proc/${L}/exe`).endsWith('/sleep')) break;
      } catch {
        // not there yet
      }
      nap(0.5);
    }
    seize(L, PTO.TRACESYSGOOD | PTO.TRACEFORK | PTO.TRACECLONE | PTO.EXITKILL);
    interrupt(L);
    expectStop(L, { event: PTEV.STOP });
    this.makeScratch(L, [...avoid, ...readMaps(L)]);
    const settid = Buffer.alloc(4);
    settid.writeInt32LE(this.pid, 0);
    vmWrite(L, this.scratchAddr + OFF_SETTID, settid);
    const args = Buffer.alloc(88);
    args.writeBigUInt64LE(17n, 32); // exit_signal SIGCHLD
    args.writeBigUInt64LE(this.scratchAddr + OFF_SETTID, 64);
    args.writeBigUInt64LE(1n, 72);
    vmWrite(L, this.scratchAddr + OFF_ARGS, args);
    takeEvents();
    const r = injectAt(L, this.scratchAddr, SYS.clone3, [this.scratchAddr + OFF_ARGS, 88]);
    if (r === -17n) throw new FerryError(ErrorCode.Conflict, `pid ${this.pid} is in use: cannot restore into it`, { details: { pid: this.pid } });
    const e = errOf('injected clone3', r, { pid: L });
    if (e) throw e;
    if (Number(r) !== this.pid) throw new FerryError(ErrorCode.Internal, `husk got pid ${r}, wanted ${this.pid}`);
    takeEvents();
    this.tids.push(this.pid);
    expectStop(this.pid, { event: PTEV.STOP });
    detach(L);
    killPid(L, 9);
    this.launcher = 0;
    if (chan.hasSubscribers) chan.publish({ kind: 'created', pid: this.pid, scratch: this.scratchAddr });
  }

  /**
   * Takes a husk some other way started (a container's init, listed in tids already): seized,
   * stopped, given its scratch page.
   */
  adopt(avoid: readonly Span[]): void {
    const pid = this.pid;
    seize(pid, PTO.TRACESYSGOOD | PTO.TRACEFORK | PTO.TRACECLONE | PTO.EXITKILL);
    interrupt(pid);
    expectStop(pid, { event: PTEV.STOP });
    this.makeScratch(pid, [...avoid, ...readMaps(pid)]);
  }

  /**
   * The core of a child just cloned out of this husk (`hostPid` as the agent sees it, `pid` as
   * the image does): same scratch address, same parked fds, same session.
   */
  forkedChild(hostPid: number, pid: number): HuskCore {
    const child = new HuskCore(hostPid);
    child.scratchAddr = this.scratchAddr;
    child.parkBase = this.parkBase;
    child.parked = this.parked;
    child.sessionDone = this.sessionDone;
    child.inheritsMemory = this.memoryBuilt;
    child.tids.push(hostPid);
    child.hostTid.set(pid, hostPid);
    return child;
  }

  /** Lets every thread run. */
  release(): void {
    for (const tid of this.tids) detach(tid);
    this.finished = true;
    if (chan.hasSubscribers) chan.publish({ kind: 'released', pid: this.pid, threads: this.tids.length });
  }

  /**
   * Kills whatever was built and consumes the exits so nothing is left behind. Never throws.
   * First the agent's duplicates of restored connections go (closed in repair mode: silent).
   */
  abort(): void {
    for (const c of this.connections.splice(0)) closeFd(c.fd);
    if (this.finished) return;
    for (const pid of [this.launcher, this.tids.length > 0 ? this.pid : 0]) {
      if (pid <= 0) continue;
      try {
        killPid(pid, 9);
      } catch {
        // gone
      }
    }
    for (const tid of [this.launcher, ...this.tids]) {
      if (tid <= 0) continue;
      const deadline = Date.now() + 1000;
      try {
        while (Date.now() < deadline) {
          const [r, st] = waitpid(tid, WALL | WNOHANG);
          if (r === tid && (st & 0xff) !== 0x7f) break;
          if (r === 0) nap(1);
        }
      } catch {
        // not ours to wait for any more
      }
    }
    this.finished = true;
  }
}

/** The agent's own duplicate of one of the husk's descriptors. */
export function agentFd(pid: number, fd: number): number {
  const pidfd = pidfdOpen(pid);
  try {
    return pidfdGetfd(pidfd, fd);
  } finally {
    closeFd(pidfd);
  }
}

/** Writes bytes into one of the husk's descriptors from the agent (pidfd_getfd), e.g. data in flight in a pipe. */
export function agentWrite(pid: number, fd: number, data: Buffer): void {
  const mine = agentFd(pid, fd);
  try {
    let off = 0;
    while (off < data.length) off += writeFd(mine, data.subarray(off));
  } finally {
    closeFd(mine);
  }
}

/** Sends datagrams, one by one, through one of the husk's sockets from the agent. */
export function agentSend(pid: number, fd: number, messages: readonly Buffer[]): void {
  const mine = agentFd(pid, fd);
  try {
    for (const m of messages) sys('sendto', mine, m, m.length, 0x40, 0, 0); // MSG_DONTWAIT
  } finally {
    closeFd(mine);
  }
}
