// The core of a husk: the process a restore turns into the checkpointed one. Here: how it is
// started and emptied, its scratch page, its mappings and mm fields, and the final hand-over of
// registers. Descriptors are in husk-files.ts, process and thread state in husk.ts.
import diagnostics_channel from 'node:diagnostics_channel';
import { readlinkSync } from 'node:fs';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type ProcessImage, type ThreadImage, type Vma, fromHex, toHex } from '../../shared/image-format.ts';
import { SYS } from '../ffi/libc.ts';
import {
  NT_X86_XSTATE,
  PTEV,
  PTO,
  Regs,
  detach,
  expectStop,
  getRegs,
  getRseq,
  injectAt,
  interrupt,
  peek,
  poke,
  seize,
  setRegs,
  setRegset,
  setSigmask,
  syscallStep,
  takeEvents,
} from '../ffi/ptrace.ts';
import { SyscallError, WALL, WNOHANG, killPid, vmWrite, waitpid } from '../ffi/syscalls.ts';
import { spawnDetached } from './detached.ts';
import { type Span, findFar, findFree, gaps } from './layout.ts';
import { PagesReader } from './memory.ts';
import { readMaps } from './procfs.ts';
import { type MapSpec, planRelayout } from './relayout.ts';

export const chan = diagnostics_channel.channel('ferry:husk');

export const SCRATCH_SIZE = 0x10000n;
export const OFF_ARGS = 0x100n;
export const OFF_STR = 0x1000n;
export const OFF_AUXV = 0x3000n;
export const OFF_SETTID = 0x5000n;

export const PROT = { R: 1, W: 2, X: 4 } as const;
export const MAP = { SHARED: 1, PRIVATE: 2, FIXED: 0x10, ANON: 0x20, GROWSDOWN: 0x100, FIXED_NOREPLACE: 0x100000 } as const;
export const CLONE_THREAD_FLAGS = 0x50f00n; // VM|FS|FILES|SIGHAND|THREAD|SYSVSEM
export const SPECIAL_KINDS = new Set(['vdso', 'vvar', 'vvar_vclock', 'vsyscall']);
export const MOVABLE = new Set(['[vvar]', '[vvar_vclock]', '[vdso]']);
export const ANON_FD_KINDS = new Set(['eventfd', 'timerfd', 'signalfd', 'epoll', 'pidfd']);

export const sleeper = new Int32Array(new SharedArrayBuffer(4));
export const nap = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

/** A command prefix that starts a husk inside a network namespace (nsenter execs, so the pid stays). */
export const inNetns = (netns: string | undefined): string[] => (netns ? ['nsenter', `--net=${netns}`, '--'] : []);

/** Mappings a live migration writes pages into: mapped writable until the final step. */
export const PRIVATE_KINDS = new Set(['anon', 'heap', 'stack', 'file-private']);

/** A warm husk's protection for a mapping: its own, plus write where pages may still arrive. */
export const warmProt = (v: { kind: string; perms: string }): number => protOf(v.perms) | (PRIVATE_KINDS.has(v.kind) ? PROT.W : 0);

type LayoutLike = Pick<Vma, 'start' | 'end' | 'perms' | 'kind' | 'path' | 'fileOffset'>;

const mapSpec = (v: LayoutLike): MapSpec => ({ start: fromHex(v.start), end: fromHex(v.end), perms: v.perms, kind: v.kind, ...(v.path !== undefined ? { path: v.path } : {}), fileOffset: fromHex(v.fileOffset) });

export const protOf = (perms: string): number => (perms[0] === 'r' ? PROT.R : 0) | (perms[1] === 'w' ? PROT.W : 0) | (perms[2] === 'x' ? PROT.X : 0);

/** Registers as the thread must resume: interrupted syscalls restart the way the kernel would have restarted them. */
export function resumeRegs(saved: Regs): Regs {
  const r = saved.clone();
  const rax = r.getSigned('rax');
  if (rax === -512n || rax === -513n || rax === -514n) {
    r.set('rip', r.get('rip') - 2n);
    r.set('rax', r.get('orig_rax'));
  } else if (rax === -516n) {
    r.set('rax', -4n); // ERESTART_RESTARTBLOCK: its restart block is gone, EINTR is what callers handle
  }
  r.set('orig_rax', -1n);
  return r;
}

export function errOf(call: string, r: bigint, extra: Record<string, unknown>): SyscallError | null {
  return r < 0n && r > -4096n ? new SyscallError(call, Number(-r), extra) : null;
}

export class HuskCore {
  readonly tids: number[] = [];
  protected launcher = 0;
  protected scratch = 0n;
  protected finished = false;
  /** First fd of the parked shared descriptions (0 when there are none). */
  protected parkBase = 0;
  /** Per shared entry: its read and write ends (the same fd for one description), and a FIFO's O_RDWR description. */
  protected parked: { r: number; w: number; rw?: number }[] = [];
  protected sessionDone = false;
  /** This husk was forked from a parent whose memory was already built: it holds the parent's mappings. */
  inheritsMemory = false;
  /** buildMemory has run: a child forked now inherits this husk's mappings. */
  memoryBuilt = false;
  /** Thread ids as the image knows them -> as the agent sees them (they differ inside a container). */
  protected readonly hostTid = new Map<number, number>();

  protected constructor(readonly pid: number) {}

  protected host(tid: number): number {
    return this.hostTid.get(tid) ?? tid;
  }

  protected inj(tid: number, name: keyof typeof SYS, args: ReadonlyArray<bigint | number> = []): bigint {
    const r = injectAt(tid, this.scratch, SYS[name], args);
    const e = errOf(`injected ${name}`, r, { pid: this.pid, tid });
    if (e) throw e;
    return r;
  }

  protected put(off: bigint, data: Buffer): bigint {
    vmWrite(this.pid, this.scratch + off, data);
    return this.scratch + off;
  }

  protected putStr(s: string): bigint {
    const b = Buffer.from(`${s}\0`);
    if (b.length > Number(OFF_AUXV - OFF_STR)) throw new FerryError(ErrorCode.Unsupported, `path too long for the husk: ${s.slice(0, 80)}...`);
    return this.put(OFF_STR, b);
  }

  /** A scratch page holding `syscall; int3`, made by patching the word at the task's rip for one mmap. */
  protected makeScratch(tid: number, occupied: readonly Span[]): void {
    // Far from everything: a husk built during pre-copy must stay clear of mappings the workload makes meanwhile.
    this.scratch = findFar(occupied, SCRATCH_SIZE);
    const rip = getRegs(tid).get('rip');
    const orig = peek(tid, rip);
    poke(tid, rip, (orig & ~0xffffffn) | 0xcc050fn); // syscall; int3
    const m = injectAt(tid, rip, SYS.mmap, [this.scratch, SCRATCH_SIZE, PROT.R | PROT.W | PROT.X, MAP.PRIVATE | MAP.ANON | MAP.FIXED_NOREPLACE, -1, 0]);
    poke(tid, rip, orig);
    if (m !== this.scratch) throw errOf('injected mmap(scratch)', m, { pid: tid }) ?? new FerryError(ErrorCode.Internal, 'scratch landed elsewhere');
    vmWrite(tid, this.scratch, Buffer.from([0x0f, 0x05, 0xcc]));
  }

  /** netns: a network namespace file the husk starts in (its sockets are made there). */
  protected spawn(avoid: readonly Span[], netns?: string): void {
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
    vmWrite(L, this.scratch + OFF_SETTID, settid);
    const args = Buffer.alloc(88);
    args.writeBigUInt64LE(17n, 32); // exit_signal SIGCHLD
    args.writeBigUInt64LE(this.scratch + OFF_SETTID, 64);
    args.writeBigUInt64LE(1n, 72);
    vmWrite(L, this.scratch + OFF_ARGS, args);
    takeEvents();
    const r = injectAt(L, this.scratch, SYS.clone3, [this.scratch + OFF_ARGS, 88]);
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
    if (chan.hasSubscribers) chan.publish({ kind: 'created', pid: this.pid, scratch: this.scratch });
  }

  /** Makes the husk lead its own session now, before children are cloned into it. */
  leadSession(): void {
    this.inj(this.pid, 'setsid');
    this.sessionDone = true;
  }

  /**
   * Empties the husk: its own rseq, fds and mappings go (except mappings the image says it
   * inherits from its parent); the vDSO/vvar move to the image's addresses.
   */
  clear(vmas: readonly Pick<Vma, 'start' | 'end' | 'kind' | 'inherit'>[]): void {
    const pid = this.pid;
    const inherited = vmas.filter((v) => v.inherit).map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) }));
    if (inherited.length > 0 && !this.inheritsMemory)
      throw new FerryError(ErrorCode.BadImage, `pid ${pid}: the image shares memory with its parent; only a restore that forks it from its built parent (restore()) can rebuild it`, { details: { pid } });
    const rs = getRseq(pid);
    if (rs.ptr !== 0n) this.inj(pid, 'rseq', [rs.ptr, rs.size, 1, rs.sig]);
    this.inj(pid, 'close_range', [0, this.parkBase > 0 ? this.parkBase - 1 : 0xffffffff, 0]);
    const own = readMaps(pid).filter((m) => MOVABLE.has(m.path) || m.path === '[vsyscall]' || m.start === this.scratch);
    const keep = [...own, ...inherited];
    for (const g of gaps(keep)) this.inj(pid, 'munmap', [g.start, g.end - g.start]);
    this.placeSpecials(vmas);
  }

  /** The scratch area, which no mapping of the image may cover. */
  get scratchSpan(): Span {
    return { start: this.scratch, end: this.scratch + SCRATCH_SIZE };
  }

  /**
   * Moves the husk's [vvar]/[vvar_vclock]/[vdso] to where the image has them (through a parking
   * spot, so a move never lands on one that has not moved yet). The image's other mappings must
   * not be in the way. Nothing moves when they are in place already.
   */
  placeSpecials(vmas: readonly Pick<Vma, 'start' | 'end' | 'kind'>[]): void {
    const pid = this.pid;
    const maps = readMaps(pid);
    const mine = maps.filter((m) => MOVABLE.has(m.path));
    const theirs = vmas.filter((v) => v.kind === 'vdso' || v.kind === 'vvar' || v.kind === 'vvar_vclock');
    const sig = (l: { name: string; size: bigint }[]) => l.map((x) => `${x.name}:${x.size}`).join(' ');
    if (sig(mine.map((m) => ({ name: m.path, size: m.end - m.start }))) !== sig(theirs.map((v) => ({ name: `[${v.kind}]`, size: fromHex(v.end) - fromHex(v.start) }))))
      throw new FerryError(ErrorCode.Incompatible, 'vDSO layout of this machine differs from the image', { details: { pid } });
    if (mine.every((m, i) => m.start === fromHex(theirs[i]!.start))) return;
    const lo = mine.reduce((a, m) => (m.start < a ? m.start : a), mine[0]?.start ?? 0n);
    const hi = mine.reduce((a, m) => (m.end > a ? m.end : a), 0n);
    const occupied = [...vmas.map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) })), ...maps];
    const park = findFree(occupied, hi - lo);
    for (const m of mine) this.inj(pid, 'mremap', [m.start, m.end - m.start, m.end - m.start, 3, park + (m.start - lo)]);
    mine.forEach((m, i) => {
      const t = theirs[i]!;
      this.inj(pid, 'mremap', [park + (m.start - lo), m.end - m.start, m.end - m.start, 3, fromHex(t.start)]);
    });
  }

  /** Recreates the image's mappings, writable where content still has to be written. */
  mapAll(vmas: readonly Vma[]): void {
    for (const v of vmas) {
      if (SPECIAL_KINDS.has(v.kind)) continue;
      const prot = protOf(v.perms) | (v.runs.length > 0 ? PROT.W : 0);
      if (v.inherit) this.keepInherited(v, prot);
      else this.mapOne(v, prot);
    }
  }

  /** An inherited mapping stays (pages shared with the parent stay shared); pages the process did not have are dropped. */
  private keepInherited(v: Vma, prot: number): void {
    const start = fromHex(v.start);
    this.inj(this.pid, 'mprotect', [start, fromHex(v.end) - start, prot]);
    for (const z of v.inherit?.zero ?? []) this.inj(this.pid, 'madvise', [fromHex(z.addr), BigInt(z.pages) * 4096n, 4]); // MADV_DONTNEED
  }

  /** One mapping, with protection `prot`; shared memory maps the parked shared object it names. */
  mapOne(v: Pick<Vma, 'start' | 'end' | 'perms' | 'kind' | 'path' | 'fileOffset' | 'shared' | 'growsDown' | 'mayWrite'>, prot: number): void {
    const start = fromHex(v.start);
    const len = fromHex(v.end) - start;
    if (v.kind === 'shm') {
      const slot = v.shared === undefined ? undefined : this.parked[v.shared];
      if (!slot) throw new FerryError(ErrorCode.BadImage, `shared mapping ${v.start} of pid ${this.pid} has no shared object in the image`);
      this.inj(this.pid, 'mmap', [start, len, protOf(v.perms), MAP.SHARED | MAP.FIXED, slot.r, fromHex(v.fileOffset)]);
    } else if ((v.kind === 'file-private' || v.kind === 'file-shared') && v.shared !== undefined) {
      // A deleted file: mapped from the parked unnamed file that carries its content.
      const slot = this.parked[v.shared];
      if (!slot) throw new FerryError(ErrorCode.BadImage, `mapping ${v.start} of pid ${this.pid} (deleted file) has no content in the image`);
      this.inj(this.pid, 'mmap', [start, len, prot, (v.kind === 'file-shared' ? MAP.SHARED : MAP.PRIVATE) | MAP.FIXED, slot.r, fromHex(v.fileOffset)]);
    } else if (v.kind === 'file-private' || v.kind === 'file-shared') {
      const shared = v.kind === 'file-shared';
      // A shared mapping of a file open for writing may be made writable later: open it the same way.
      const fd = this.inj(this.pid, 'open', [this.putStr(v.path ?? ''), shared && (v.perms[1] === 'w' || v.mayWrite) ? 2 : 0, 0]);
      try {
        this.inj(this.pid, 'mmap', [start, len, prot, (shared ? MAP.SHARED : MAP.PRIVATE) | MAP.FIXED, fd, fromHex(v.fileOffset)]);
      } finally {
        this.inj(this.pid, 'close', [fd]);
      }
    } else {
      const flags = MAP.PRIVATE | MAP.ANON | MAP.FIXED | (v.kind === 'stack' || v.growsDown ? MAP.GROWSDOWN : 0);
      this.inj(this.pid, 'mmap', [start, len, prot, flags, -1, 0]);
    }
  }

  /**
   * Warm restore: reshapes the husk from the layout it has (`current`) to `next`, keeping the
   * content of every range whose backing stays (relayout.ts); special mappings move along.
   * Shared memory is left to the final step.
   */
  relayout(current: readonly LayoutLike[], next: readonly LayoutLike[]): void {
    const sc = this.scratchSpan;
    const hit = next.find((v) => fromHex(v.start) < sc.end && sc.start < fromHex(v.end));
    if (hit) throw new FerryError(ErrorCode.Unsupported, `pid ${this.pid}: the workload mapped ${hit.start}-${hit.end} over the husk's scratch area`, { details: { pid: this.pid } });
    const plan = planRelayout(current.map(mapSpec), next.map(mapSpec));
    for (const u of plan.unmap) this.unmapRange(u.start, u.end);
    this.placeSpecials(next);
    for (const m of plan.map) this.mapOne({ ...m, start: toHex(m.start), end: toHex(m.end), fileOffset: toHex(m.fileOffset), kind: m.kind as Vma['kind'] }, warmProt(m));
    for (const p of plan.protect) this.protectRange(p.start, p.end, warmProt({ kind: next.find((v) => fromHex(v.start) <= p.start && p.start < fromHex(v.end))?.kind ?? 'anon', perms: p.perms }));
  }

  unmapRange(start: bigint, end: bigint): void {
    this.inj(this.pid, 'munmap', [start, end - start]);
  }

  protectRange(start: bigint, end: bigint, prot: number): void {
    this.inj(this.pid, 'mprotect', [start, end - start, prot]);
  }

  /** One range of memory straight into the husk (pre-copy rounds write here before the freeze ends). */
  writeRange(addr: bigint, data: Buffer): void {
    vmWrite(this.pid, addr, data);
  }

  writePages(vmas: readonly Vma[], reader: PagesReader): void {
    for (const v of vmas) for (const run of v.runs) reader.writeInto(this.pid, run);
  }

  /** Puts back the protections that mapAll widened for writing. */
  protectAll(vmas: readonly Vma[]): void {
    for (const v of vmas) {
      if (SPECIAL_KINDS.has(v.kind) || v.runs.length === 0 || v.perms[1] === 'w') continue;
      const start = fromHex(v.start);
      this.inj(this.pid, 'mprotect', [start, fromHex(v.end) - start, protOf(v.perms)]);
    }
  }

  /** mm fields (code/data/brk/stack/args/env, auxv, exe) in one PR_SET_MM_MAP. */
  setMm(p: ProcessImage): void {
    const auxv = Buffer.from(p.auxv, 'base64');
    const auxvAddr = this.put(OFF_AUXV, auxv);
    const mm = p.mm;
    const vals = [mm.startCode, mm.endCode, mm.startData, mm.endData, mm.startBrk, mm.brk, mm.startStack, mm.argStart, mm.argEnd, mm.envStart, mm.envEnd];
    const build = (exeFd: number) => {
      const b = Buffer.alloc(104);
      vals.forEach((v, i) => b.writeBigUInt64LE(fromHex(v), i * 8));
      b.writeBigUInt64LE(auxvAddr, 88);
      b.writeUInt32LE(auxv.length, 96);
      b.writeInt32LE(exeFd, 100);
      return this.put(OFF_ARGS, b);
    };
    let exeFd = -1;
    try {
      exeFd = Number(this.inj(this.pid, 'open', [this.putStr(p.exe), 0, 0]));
    } catch {
      // exe gone or unreadable: keep the husk's exe link
    }
    try {
      const r = injectAt(this.pid, this.scratch, SYS.prctl, [35, 14, build(exeFd), 104, 0]);
      if (r < 0n && exeFd >= 0) {
        if (chan.hasSubscribers) chan.publish({ kind: 'exe-not-set', pid: this.pid, errno: Number(-r) });
        this.inj(this.pid, 'prctl', [35, 14, build(-1), 104, 0]);
      } else if (r < 0n) throw errOf('injected prctl(PR_SET_MM_MAP)', r, { pid: this.pid })!;
    } finally {
      if (exeFd >= 0) this.inj(this.pid, 'close', [exeFd]);
    }
  }

  /** Hands a non-leader thread its saved registers; it stays stopped until release(). */
  setThreadRegs(t: ThreadImage): void {
    const tid = this.host(t.tid);
    setRegs(tid, resumeRegs(new Regs(Buffer.from(t.regs, 'base64'))));
    setRegset(tid, NT_X86_XSTATE, Buffer.from(t.xstate, 'base64'));
  }

  /**
   * The leader unmaps the scratch page with its own last syscall; its saved registers go in at
   * that syscall's exit stop, so no instruction ever runs from the vanished page.
   */
  finishLeader(t: ThreadImage): void {
    const pid = this.pid;
    this.hostTid.set(t.tid, pid);
    const r = getRegs(pid).clone();
    r.set('rip', this.scratch);
    r.set('rax', SYS.munmap);
    r.set('orig_rax', -1n);
    r.set('rdi', this.scratch);
    r.set('rsi', SCRATCH_SIZE);
    setRegs(pid, r);
    // Restored pending signals must wait for the real mask, not stop this last step.
    setSigmask(pid, (1n << 64n) - 1n);
    syscallStep(pid);
    expectStop(pid, { sig: 0x85 });
    syscallStep(pid);
    expectStop(pid, { sig: 0x85 });
    setSigmask(pid, fromHex(t.sigmask));
    const res = getRegs(pid).getSigned('rax');
    if (res !== 0n) throw errOf('munmap(scratch)', res, { pid }) ?? new FerryError(ErrorCode.Internal, 'munmap(scratch) failed');
    this.setThreadRegs(t);
  }

  /** Lets every thread run. */
  release(): void {
    for (const tid of this.tids) detach(tid);
    this.finished = true;
    if (chan.hasSubscribers) chan.publish({ kind: 'released', pid: this.pid, threads: this.tids.length });
  }

  /** Kills whatever was built and consumes the exits so nothing is left behind. Never throws. */
  abort(): void {
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
