// A husk is the process a restore turns into the checkpointed one: created with the saved PID,
// emptied, given the saved mappings, filled, and finally handed the saved registers. Each step
// is a method so the migration path can build and fill a husk during pre-copy and finish it
// after the freeze.
import diagnostics_channel from 'node:diagnostics_channel';
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type FdImage, type ProcessImage, type SharedImage, type ThreadImage, type Vma, fromHex } from '../../shared/image-format.ts';
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
import { SyscallError, WALL, WNOHANG, closeFd, killPid, pidfdGetfd, pidfdOpen, pwrite, sys, vmRead, vmWrite, waitpid, writeFd } from '../ffi/syscalls.ts';
import { spawnDetached } from './detached.ts';
import { type Span, findFree, gaps } from './layout.ts';
import { PagesReader } from './memory.ts';
import { readMaps } from './procfs.ts';

const chan = diagnostics_channel.channel('ferry:husk');

const SCRATCH_SIZE = 0x10000n;
const OFF_ARGS = 0x100n;
const OFF_STR = 0x1000n;
const OFF_AUXV = 0x3000n;
const OFF_SETTID = 0x5000n;

const PROT = { R: 1, W: 2, X: 4 } as const;
const MAP = { SHARED: 1, PRIVATE: 2, FIXED: 0x10, ANON: 0x20, GROWSDOWN: 0x100, FIXED_NOREPLACE: 0x100000 } as const;
const CLONE_THREAD_FLAGS = 0x50f00n; // VM|FS|FILES|SIGHAND|THREAD|SYSVSEM
const SPECIAL_KINDS = new Set(['vdso', 'vvar', 'vvar_vclock', 'vsyscall']);
const MOVABLE = new Set(['[vvar]', '[vvar_vclock]', '[vdso]']);
const ANON_FD_KINDS = new Set(['eventfd', 'timerfd', 'signalfd', 'epoll']);

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const nap = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);

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

function errOf(call: string, r: bigint, extra: Record<string, unknown>): SyscallError | null {
  return r < 0n && r > -4096n ? new SyscallError(call, Number(-r), extra) : null;
}

export class Husk {
  readonly tids: number[] = [];
  private launcher = 0;
  private scratch = 0n;
  private finished = false;
  /** First fd of the parked shared descriptions (0 when there are none). */
  private parkBase = 0;
  private parked: { r: number; w: number }[] = [];
  private sessionDone = false;

  private constructor(readonly pid: number) {}

  private inj(tid: number, name: keyof typeof SYS, args: ReadonlyArray<bigint | number> = []): bigint {
    const r = injectAt(tid, this.scratch, SYS[name], args);
    const e = errOf(`injected ${name}`, r, { pid: this.pid, tid });
    if (e) throw e;
    return r;
  }

  private put(off: bigint, data: Buffer): bigint {
    vmWrite(this.pid, this.scratch + off, data);
    return this.scratch + off;
  }

  private putStr(s: string): bigint {
    const b = Buffer.from(`${s}\0`);
    if (b.length > Number(OFF_AUXV - OFF_STR)) throw new FerryError(ErrorCode.Unsupported, `path too long for the husk: ${s.slice(0, 80)}...`);
    return this.put(OFF_STR, b);
  }

  /**
   * Starts a detached launcher, gives it a scratch page, and clones the husk out of it with the
   * wanted PID; the launcher then dies so the husk belongs to init, not to the caller.
   */
  static create(pid: number, avoid: readonly Span[]): Husk {
    const h = new Husk(pid);
    try {
      h.spawn(avoid);
      return h;
    } catch (err) {
      h.abort();
      throw err;
    }
  }

  private spawn(avoid: readonly Span[]): void {
    const L = spawnDetached(['sleep', '1000000'], { newSession: false });
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
    const lmaps = readMaps(L);
    this.scratch = findFree([...avoid, ...lmaps], SCRATCH_SIZE);
    const rip = getRegs(L).get('rip');
    const orig = peek(L, rip);
    poke(L, rip, (orig & ~0xffffffn) | 0xcc050fn); // syscall; int3
    const m = injectAt(L, rip, SYS.mmap, [this.scratch, SCRATCH_SIZE, PROT.R | PROT.W | PROT.X, MAP.PRIVATE | MAP.ANON | MAP.FIXED_NOREPLACE, -1, 0]);
    poke(L, rip, orig);
    if (m !== this.scratch) throw errOf('injected mmap(scratch)', m, { pid: L }) ?? new FerryError(ErrorCode.Internal, 'scratch landed elsewhere');
    vmWrite(L, this.scratch, Buffer.from([0x0f, 0x05, 0xcc]));
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
   * Creates every shared description in this (root) husk on fds from `base` up, before any
   * child exists: children inherit them and dup what they use into place. Pipe contents are
   * written from the agent through pidfd_getfd.
   */
  createShared(shared: readonly SharedImage[], base: number, dir: string): void {
    this.parkBase = base;
    let next = base;
    for (const sh of shared) {
      if (sh.kind === 'pipe') {
        const fds = this.put(OFF_ARGS, Buffer.alloc(8));
        this.inj(this.pid, 'pipe2', [fds, 0]);
        const b = Buffer.alloc(8);
        vmRead(this.pid, fds, b);
        const r = next++;
        const w = next++;
        this.inj(this.pid, 'dup3', [b.readInt32LE(0), r, 0]);
        this.inj(this.pid, 'dup3', [b.readInt32LE(4), w, 0]);
        this.inj(this.pid, 'close', [b.readInt32LE(0)]);
        this.inj(this.pid, 'close', [b.readInt32LE(4)]);
        if (sh.capacity !== 65536) this.inj(this.pid, 'fcntl', [w, 1031, sh.capacity]); // F_SETPIPE_SZ
        const data = Buffer.from(sh.data, 'base64');
        if (data.length > 0) this.agentWrite(w, data);
        // Status flags live on the description, so setting them once here sets them for every holder.
        this.inj(this.pid, 'fcntl', [r, 4, sh.readFlags & ~3]); // F_SETFL
        this.inj(this.pid, 'fcntl', [w, 4, sh.writeFlags & ~3]);
        this.parked.push({ r, w });
      } else if (sh.kind === 'socketpair') {
        const sv = this.put(OFF_ARGS, Buffer.alloc(8));
        this.inj(this.pid, 'socketpair', [1, sh.type, 0, sv]);
        const b = Buffer.alloc(8);
        vmRead(this.pid, sv, b);
        const ends = [next++, next++];
        for (let i = 0; i < 2; i++) {
          this.inj(this.pid, 'dup3', [b.readInt32LE(i * 4), ends[i]!, 0]);
          this.inj(this.pid, 'close', [b.readInt32LE(i * 4)]);
        }
        // What end i had queued to read was sent by the other end.
        for (let i = 0; i < 2; i++) {
          const data = Buffer.from(sh.data[i]!, 'base64');
          if (data.length > 0) this.agentWrite(ends[1 - i]!, data);
        }
        for (let i = 0; i < 2; i++) this.inj(this.pid, 'fcntl', [ends[i]!, 4, sh.flags[i]! & ~3]);
        this.parked.push({ r: ends[0]!, w: ends[1]! });
      } else if (sh.kind === 'memfd') {
        const fd = next++;
        const tmp = this.inj(this.pid, 'memfd_create', [this.putStr(sh.name), 0]);
        this.inj(this.pid, 'dup3', [tmp, fd, 0]);
        this.inj(this.pid, 'close', [tmp]);
        this.inj(this.pid, 'ftruncate', [fd, sh.size]);
        const reader = new PagesReader(join(dir, sh.file));
        const pidfd = pidfdOpen(this.pid);
        try {
          const mine = pidfdGetfd(pidfd, fd);
          try {
            for (const run of sh.runs) pwrite(mine, reader.read(run), Number(fromHex(run.addr)));
          } finally {
            closeFd(mine);
          }
        } finally {
          closeFd(pidfd);
          reader.close();
        }
        if (sh.pos > 0) this.inj(this.pid, 'lseek', [fd, sh.pos, 0]);
        this.parked.push({ r: fd, w: fd });
      } else {
        const fd = next++;
        const tmp = this.inj(this.pid, 'open', [this.putStr(sh.path), sh.flags & ~(0o100 | 0o200 | 0o1000), 0]);
        this.inj(this.pid, 'dup3', [tmp, fd, 0]);
        this.inj(this.pid, 'close', [tmp]);
        if (sh.pos > 0) this.inj(this.pid, 'lseek', [fd, sh.pos, 0]);
        this.parked.push({ r: fd, w: fd });
      }
    }
  }

  /** Writes bytes into one of the husk's descriptors from the agent (pidfd_getfd), e.g. data in flight in a pipe. */
  private agentWrite(fd: number, data: Buffer): void {
    const pidfd = pidfdOpen(this.pid);
    try {
      const mine = pidfdGetfd(pidfd, fd);
      try {
        let off = 0;
        while (off < data.length) off += writeFd(mine, data.subarray(off));
      } finally {
        closeFd(mine);
      }
    } finally {
      closeFd(pidfd);
    }
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
    takeEvents();
    const child = new Husk(pid);
    child.scratch = this.scratch;
    child.parkBase = this.parkBase;
    child.parked = this.parked;
    child.sessionDone = this.sessionDone;
    child.tids.push(pid);
    try {
      expectStop(pid, { event: PTEV.STOP });
    } catch (err) {
      child.abort();
      throw err;
    }
    return child;
  }

  /** Empties the husk: its own rseq, fds and mappings go; the vDSO/vvar move to the image's addresses. */
  clear(vmas: readonly Vma[]): void {
    const pid = this.pid;
    const rs = getRseq(pid);
    if (rs.ptr !== 0n) this.inj(pid, 'rseq', [rs.ptr, rs.size, 1, rs.sig]);
    this.inj(pid, 'close_range', [0, this.parkBase > 0 ? this.parkBase - 1 : 0xffffffff, 0]);
    const maps = readMaps(pid);
    const keep = maps.filter((m) => MOVABLE.has(m.path) || m.path === '[vsyscall]' || m.start === this.scratch);
    for (const g of gaps(keep)) this.inj(pid, 'munmap', [g.start, g.end - g.start]);
    const mine = keep.filter((m) => MOVABLE.has(m.path));
    const theirs = vmas.filter((v) => v.kind === 'vdso' || v.kind === 'vvar' || v.kind === 'vvar_vclock');
    const sig = (l: { name: string; size: bigint }[]) => l.map((x) => `${x.name}:${x.size}`).join(' ');
    if (sig(mine.map((m) => ({ name: m.path, size: m.end - m.start }))) !== sig(theirs.map((v) => ({ name: `[${v.kind}]`, size: fromHex(v.end) - fromHex(v.start) }))))
      throw new FerryError(ErrorCode.Incompatible, 'vDSO layout of this machine differs from the image', { details: { pid } });
    // Park first so a move never lands on a special mapping that has not moved yet.
    const lo = mine.reduce((a, m) => (m.start < a ? m.start : a), mine[0]?.start ?? 0n);
    const hi = mine.reduce((a, m) => (m.end > a ? m.end : a), 0n);
    const occupied = [...vmas.map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) })), ...keep];
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
      const start = fromHex(v.start);
      const len = fromHex(v.end) - start;
      const prot = protOf(v.perms) | (v.runs.length > 0 ? PROT.W : 0);
      if (v.kind === 'shm') {
        const slot = v.shared === undefined ? undefined : this.parked[v.shared];
        if (!slot) throw new FerryError(ErrorCode.BadImage, `shared mapping ${v.start} of pid ${this.pid} has no shared object in the image`);
        this.inj(this.pid, 'mmap', [start, len, protOf(v.perms), MAP.SHARED | MAP.FIXED, slot.r, fromHex(v.fileOffset)]);
      } else if (v.kind === 'file-private' || v.kind === 'file-shared') {
        const shared = v.kind === 'file-shared';
        const fd = this.inj(this.pid, 'open', [this.putStr(v.path ?? ''), shared && v.perms[1] === 'w' ? 2 : 0, 0]);
        try {
          this.inj(this.pid, 'mmap', [start, len, prot, (shared ? MAP.SHARED : MAP.PRIVATE) | MAP.FIXED, fd, fromHex(v.fileOffset)]);
        } finally {
          this.inj(this.pid, 'close', [fd]);
        }
      } else {
        const flags = MAP.PRIVATE | MAP.ANON | MAP.FIXED | (v.kind === 'stack' ? MAP.GROWSDOWN : 0);
        this.inj(this.pid, 'mmap', [start, len, prot, flags, -1, 0]);
      }
    }
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

  restoreFds(fds: readonly FdImage[]): void {
    for (const f of fds) {
      const cloexec = f.cloexec ? 0o2000000 : 0;
      if (f.shared !== undefined && f.dupOf === undefined) {
        const slot = this.parked[f.shared];
        if (!slot) throw new FerryError(ErrorCode.BadImage, `fd ${f.fd} of pid ${this.pid} names shared description ${f.shared}, which the image lacks`);
        this.inj(this.pid, 'dup3', [(f.end ?? ((f.flags & 3) === 0 ? 0 : 1)) === 0 ? slot.r : slot.w, f.fd, cloexec]);
        continue;
      }
      if (f.dupOf === undefined && ANON_FD_KINDS.has(f.kind)) {
        this.createAnonFd(f);
        continue;
      }
      if (f.dupOf !== undefined) {
        this.inj(this.pid, 'dup3', [f.dupOf, f.fd, cloexec]);
        continue;
      }
      const flags = (f.flags & ~(0o100 | 0o200 | 0o1000)) | (f.kind === 'dir' ? 0o200000 : 0);
      let tmp: bigint;
      try {
        tmp = this.inj(this.pid, 'open', [this.putStr(f.path), flags, 0]);
      } catch (err) {
        throw new FerryError(ErrorCode.NotFound, `cannot reopen fd ${f.fd} of pid ${this.pid}: ${f.path}`, { details: { pid: this.pid, fd: f.fd, path: f.path }, cause: err });
      }
      if (Number(tmp) !== f.fd) {
        this.inj(this.pid, 'dup3', [tmp, f.fd, cloexec]);
        this.inj(this.pid, 'close', [tmp]);
      } else if (cloexec) this.inj(this.pid, 'fcntl', [f.fd, 2, 1]); // F_SETFD FD_CLOEXEC
      if (f.kind === 'file' && f.pos > 0) this.inj(this.pid, 'lseek', [f.fd, f.pos, 0]);
    }
    if (this.parkBase > 0) this.inj(this.pid, 'close_range', [this.parkBase, 0xffffffff, 0]);
    // Registrations name fd numbers, so they go in once every fd is in place.
    for (const f of fds) {
      if (f.kind !== 'epoll' || f.dupOf !== undefined) continue;
      for (const it of f.epoll ?? []) {
        const ev = Buffer.alloc(12); // struct epoll_event is packed on x86-64
        ev.writeUInt32LE(it.events >>> 0, 0);
        ev.writeBigUInt64LE(fromHex(it.data), 4);
        this.inj(this.pid, 'epoll_ctl', [f.fd, 1, it.tfd, this.put(OFF_ARGS, ev)]);
      }
    }
  }

  /** eventfd, timerfd, signalfd and epoll instances are made anew with their state. */
  private createAnonFd(f: FdImage): void {
    const nb = f.flags & 0o4000;
    let tmp: bigint;
    switch (f.kind) {
      case 'eventfd':
        tmp = this.inj(this.pid, 'eventfd2', [0, nb | (f.eventfd?.semaphore ? 1 : 0)]);
        break;
      case 'timerfd':
        tmp = this.inj(this.pid, 'timerfd_create', [f.timerfd?.clockid ?? 1, nb]);
        break;
      case 'signalfd': {
        const m = Buffer.alloc(8);
        m.writeBigUInt64LE(fromHex(f.signalfd?.mask ?? '0x0'), 0);
        tmp = this.inj(this.pid, 'signalfd4', [-1, this.put(OFF_ARGS, m), 8, nb]);
        break;
      }
      default:
        tmp = this.inj(this.pid, 'epoll_create1', [0]);
    }
    this.inj(this.pid, 'dup3', [tmp, f.fd, f.cloexec ? 0o2000000 : 0]);
    this.inj(this.pid, 'close', [tmp]);
    if (f.eventfd && fromHex(f.eventfd.count) > 0n) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(fromHex(f.eventfd.count), 0);
      this.agentWrite(f.fd, b);
    }
    const t = f.timerfd;
    if (t && (t.value[0] !== 0 || t.value[1] !== 0)) {
      const its = Buffer.alloc(32);
      [t.interval[0], t.interval[1], t.value[0], t.value[1]].forEach((v, i) => its.writeBigInt64LE(BigInt(v), i * 8));
      this.inj(this.pid, 'timerfd_settime', [f.fd, 0, this.put(OFF_ARGS, its), 0]);
    }
  }

  restoreProcessState(p: ProcessImage): void {
    const pid = this.pid;
    this.inj(pid, 'chdir', [this.putStr(p.cwd)]);
    this.inj(pid, 'umask', [p.umask]);
    this.inj(pid, 'personality', [p.personality]);
    for (const a of p.sigactions) {
      const b = Buffer.alloc(32);
      b.writeBigUInt64LE(fromHex(a.handler), 0);
      b.writeBigUInt64LE(fromHex(a.flags), 8);
      b.writeBigUInt64LE(fromHex(a.restorer), 16);
      b.writeBigUInt64LE(fromHex(a.mask), 24);
      this.inj(pid, 'rt_sigaction', [a.sig, this.put(OFF_ARGS, b), 0, 8]);
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
    if (p.pdeathsig !== 0) this.inj(pid, 'prctl', [1, p.pdeathsig]); // PR_SET_PDEATHSIG
    if (p.sid === p.pid) {
      if (!this.sessionDone) this.leadSession();
    } else if (p.pgid === p.pid) this.inj(pid, 'setpgid', [0, 0]);
    else if (injectAt(pid, this.scratch, SYS.getpgid, [0]) !== BigInt(p.pgid)) this.inj(pid, 'setpgid', [0, p.pgid]);
  }

  /** Creates every non-leader thread with its saved TID (injected clone3 with thread flags). */
  createThreads(threads: readonly ThreadImage[]): void {
    for (const t of threads) {
      if (t.tid === this.pid) continue;
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
      takeEvents();
      this.tids.push(t.tid);
      expectStop(t.tid, { event: PTEV.STOP });
    }
  }

  /** Signals queued for the whole process go back into its queue (sent to itself, so any si_code is allowed). */
  queueSharedSignals(p: ProcessImage): void {
    for (const s of p.pendingShared) this.inj(this.pid, 'rt_sigqueueinfo', [this.pid, s.sig, this.put(OFF_ARGS, Buffer.from(s.siginfo, 'base64'))]);
  }

  /** Per-thread kernel state that lives outside registers and memory. */
  restoreThreadState(t: ThreadImage): void {
    const tid = t.tid;
    for (const s of t.pending) this.inj(tid, 'rt_tgsigqueueinfo', [this.pid, tid, s.sig, this.put(OFF_ARGS, Buffer.from(s.siginfo, 'base64'))]);
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

  /** Hands a non-leader thread its saved registers; it stays stopped until release(). */
  setThreadRegs(t: ThreadImage): void {
    setRegs(t.tid, resumeRegs(new Regs(Buffer.from(t.regs, 'base64'))));
    setRegset(t.tid, NT_X86_XSTATE, Buffer.from(t.xstate, 'base64'));
  }

  /**
   * The leader unmaps the scratch page with its own last syscall; its saved registers go in at
   * that syscall's exit stop, so no instruction ever runs from the vanished page.
   */
  finishLeader(t: ThreadImage): void {
    const pid = this.pid;
    const r = getRegs(pid).clone();
    r.set('rip', this.scratch);
    r.set('rax', SYS.munmap);
    r.set('orig_rax', -1n);
    r.set('rdi', this.scratch);
    r.set('rsi', SCRATCH_SIZE);
    setRegs(pid, r);
    syscallStep(pid);
    expectStop(pid, { sig: 0x85 });
    syscallStep(pid);
    expectStop(pid, { sig: 0x85 });
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

