// Descriptors of a husk: shared descriptions created once in the root before any child exists
// (pipes with their data, socketpairs, memfds, files inherited across fork), then every fd of
// the image in place, eventfd/timerfd/signalfd/epoll made anew with their state.
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type FdImage, type InetSocketImage, type SharedImage, fromHex } from '../../shared/image-format.ts';
import { AF } from '../ffi/sockets.ts';
import { closeFd, pidfdGetfd, pidfdOpen, pwrite, sys, vmRead, writeFd } from '../ffi/syscalls.ts';
import { LeaseGuard } from './lock-sharing.ts';
import { lockCall, lockNotTaken } from './locks.ts';
import { PagesReader } from './memory.ts';
import { ANON_FD_KINDS, HuskCore, OFF_ARGS } from './husk-core.ts';
import { peekFifo } from './sharing.ts';
import { activateConnection, restoreConnection, restoreSocket } from './sockets.ts';

export class HuskFiles extends HuskCore {
  /** Restored TCP connections, still in repair mode: the agent's duplicates, activated by activateSockets(). */
  protected connections: { fd: number; img: InetSocketImage }[] = [];

  /**
   * A descriptor for a new MAP_SHARED|MAP_ANONYMOUS object (the kernel names it /dev/zero, as the
   * workload's mapping was named): mapped once by the husk, opened through map_files, unmapped.
   */
  private sharedAnonFd(size: number): bigint {
    const addr = this.inj(this.pid, 'mmap', [0, size, 3, 0x21, -1, 0]); // PROT_READ|WRITE, MAP_SHARED|ANONYMOUS
    try {
      return this.inj(this.pid, 'open', [this.putStr(`/proc/self/map_files/${addr.toString(16)}-${(addr + BigInt(size)).toString(16)}`), 2, 0]);
    } finally {
      this.inj(this.pid, 'munmap', [addr, size]);
    }
  }

  /**
   * A deleted file made again: unnamed (O_TMPFILE) in its old directory, with its owner and
   * mode, so it stays on the same filesystem and shows as deleted; a memfd where that fails.
   */
  private unnamedFile(d: { path: string; mode: number; uid: number; gid: number }, name: string): bigint {
    let fd: bigint;
    try {
      fd = this.inj(this.pid, 'open', [this.putStr(dirname(d.path)), 0o20200000 | 2, d.mode]); // O_TMPFILE | O_RDWR
    } catch {
      return this.inj(this.pid, 'memfd_create', [this.putStr(name), 0]);
    }
    this.inj(this.pid, 'fchown', [fd, d.uid, d.gid]);
    this.inj(this.pid, 'fchmod', [fd, d.mode]);
    return this.nameAsDeleted(fd, d.path);
  }

  /**
   * The file linked under the deleted file's old name for a moment, opened there and unlinked
   * again, so that its /proc name is "PATH (deleted)" as before, not "DIR/#INODE (deleted)" (the
   * unnamed file's own descriptor keeps that name: it is closed). Left unnamed when that name is
   * taken now (a live migration's verification then reports the difference).
   */
  private nameAsDeleted(fd: bigint, path: string): bigint {
    const from = this.put(OFF_ARGS, Buffer.from(`/proc/self/fd/${fd}\0`));
    try {
      this.inj(this.pid, 'linkat', [-100, from, -100, this.putStr(path), 0x400]); // AT_FDCWD, AT_SYMLINK_FOLLOW
    } catch {
      return fd;
    }
    try {
      const named = this.inj(this.pid, 'open', [this.putStr(path), 2, 0]); // O_RDWR
      this.inj(this.pid, 'close', [fd]);
      return named;
    } catch {
      return fd;
    } finally {
      this.inj(this.pid, 'unlinkat', [-100, this.putStr(path), 0]);
    }
  }

  /** Where a file description is opened from: its path, or the parked unnamed file that carries a deleted file's content. */
  protected openPath(path: string, content: number | undefined): string {
    if (content === undefined) return path;
    const slot = this.parked[content];
    if (!slot) throw new FerryError(ErrorCode.BadImage, `pid ${this.pid}: ${path} names shared content ${content}, which the image lacks`);
    return `/proc/self/fd/${slot.r}`;
  }

  /**
   * Creates every shared description in this (root) husk on fds from `base` up, before any
   * child exists: children inherit them and dup what they use into place. Pipe contents are
   * written from the agent through pidfd_getfd.
   */
  createShared(shared: readonly SharedImage[], base: number, dir: string): void {
    this.parkBase = base;
    let next = base;
    const leases = new LeaseGuard();
    const pendingConnections: { fd: number; img: InetSocketImage }[] = [];
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
      } else if (sh.kind === 'fifo') {
        // The read end first and non-blocking, so neither open waits for a peer; flags are set afterwards.
        const r = next++;
        const w = next++;
        const tr = this.inj(this.pid, 'open', [this.putStr(sh.path), 0o4000, 0]);
        this.inj(this.pid, 'dup3', [tr, r, 0]);
        this.inj(this.pid, 'close', [tr]);
        const tw = this.inj(this.pid, 'open', [this.putStr(sh.path), 0o4000 | 1, 0]);
        this.inj(this.pid, 'dup3', [tw, w, 0]);
        this.inj(this.pid, 'close', [tw]);
        let rw: number | undefined;
        if (sh.rdwr !== undefined) {
          rw = next++;
          const t = this.inj(this.pid, 'open', [this.putStr(sh.path), 0o4000 | 2, 0]);
          this.inj(this.pid, 'dup3', [t, rw, 0]);
          this.inj(this.pid, 'close', [t]);
          this.inj(this.pid, 'fcntl', [rw, 4, sh.rdwr & ~3]);
        }
        const data = Buffer.from(sh.data, 'base64');
        if (data.length > 0 && !this.stillQueued(r, sh.inode, data)) this.agentWrite(w, data);
        if (sh.readFlags >= 0) this.inj(this.pid, 'fcntl', [r, 4, sh.readFlags & ~3]);
        if (sh.writeFlags >= 0) this.inj(this.pid, 'fcntl', [w, 4, sh.writeFlags & ~3]);
        this.parked.push({ r, w, ...(rw === undefined ? {} : { rw }) });
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
          const msgs = sh.messages?.[i] ?? [];
          if (msgs.length > 0) this.agentSend(ends[1 - i]!, msgs.map((m) => Buffer.from(m, 'base64')));
        }
        for (let i = 0; i < 2; i++) this.inj(this.pid, 'fcntl', [ends[i]!, 4, sh.flags[i]! & ~3]);
        this.parked.push({ r: ends[0]!, w: ends[1]! });
      } else if (sh.kind === 'memfd') {
        const fd = next++;
        const sealing = !sh.anon && sh.seals !== undefined && sh.seals !== 1; // F_SEAL_SEAL alone: made without MFD_ALLOW_SEALING
        const tmp = sh.anon
          ? this.sharedAnonFd(sh.size)
          : sh.deleted
            ? this.unnamedFile(sh.deleted, sh.name)
            : this.inj(this.pid, 'memfd_create', [this.putStr(sh.name), sealing ? 2 : 0]);
        this.inj(this.pid, 'dup3', [tmp, fd, 0]);
        this.inj(this.pid, 'close', [tmp]);
        this.inj(this.pid, 'ftruncate', [fd, sh.size]);
        const reader = new PagesReader(join(dir, sh.file));
        try {
          const mine = this.agentFd(fd);
          try {
            for (const run of sh.runs) pwrite(mine, reader.read(run), Number(fromHex(run.addr)));
          } finally {
            closeFd(mine);
          }
        } finally {
          reader.close();
        }
        // Runs are whole pages: the last one may have written past the end.
        this.inj(this.pid, 'ftruncate', [fd, sh.size]);
        if (sh.pos > 0) this.inj(this.pid, 'lseek', [fd, sh.pos, 0]);
        // Seals once the content is in (F_SEAL_WRITE would refuse it); status flags live on the description.
        if (sealing && sh.seals) this.inj(this.pid, 'fcntl', [fd, 1033, sh.seals]); // F_ADD_SEALS
        this.inj(this.pid, 'fcntl', [fd, 4, sh.flags & ~3]);
        this.parked.push({ r: fd, w: fd });
      } else if (sh.kind === 'inet' || sh.kind === 'unix-socket') {
        // Made by the husk, so it belongs to the husk's network namespace; set up from the agent.
        const fd = next++;
        const tmp = this.inj(this.pid, 'socket', [sh.kind === 'inet' ? sh.family : AF.UNIX, sh.type, sh.kind === 'inet' ? sh.protocol : 0]);
        this.inj(this.pid, 'dup3', [tmp, fd, 0]);
        this.inj(this.pid, 'close', [tmp]);
        const mine = this.agentFd(fd);
        try {
          restoreSocket(mine, sh);
        } catch (err) {
          closeFd(mine);
          throw err;
        }
        if (sh.kind === 'inet' && sh.tcp) {
          pendingConnections.push({ fd: mine, img: sh });
          this.connections.push({ fd: mine, img: sh });
        } else closeFd(mine);
        this.parked.push({ r: fd, w: fd });
      } else {
        const fd = next++;
        if (sh.content === undefined) leases.check(this.pid, 'a description shared across fork', sh.path, sh.flags);
        const tmp = this.inj(this.pid, 'open', [this.putStr(this.openPath(sh.path, sh.content)), sh.flags & ~(0o100 | 0o200 | 0o1000), 0]);
        this.inj(this.pid, 'dup3', [tmp, fd, 0]);
        this.inj(this.pid, 'close', [tmp]);
        if (sh.pos > 0) this.inj(this.pid, 'lseek', [fd, sh.pos, 0]);
        this.parked.push({ r: fd, w: fd });
      }
    }
    // Connections once every listener is bound: a repair-mode socket may share a listener's port.
    for (const c of pendingConnections) restoreConnection(c.fd, c.img);
  }

  /**
   * A husk cloned before the shared descriptions existed (warm restore) takes them from the
   * root that made them, on the same fd numbers, as if it had inherited them: pidfd_getfd from
   * inside, so each is the same open file description. `rootPid` as this husk sees the root.
   */
  inheritParked(root: HuskFiles, rootPid: number): void {
    this.parkBase = root.parkBase;
    this.parked = root.parked;
    const fds = [...new Set(root.parked.flatMap((s) => [s.r, s.w, ...(s.rw === undefined ? [] : [s.rw])]))];
    if (fds.length === 0) return;
    const pidfd = Number(this.inj(this.pid, 'pidfd_open', [rootPid, 0]));
    try {
      for (const fd of fds) {
        const got = Number(this.inj(this.pid, 'pidfd_getfd', [pidfd, fd, 0]));
        if (got === fd) continue;
        this.inj(this.pid, 'dup3', [got, fd, 0]);
        this.inj(this.pid, 'close', [got]);
      }
    } finally {
      this.inj(this.pid, 'close', [pidfd]);
    }
  }

  /**
   * Lets restored TCP connections talk: each leaves repair mode (a window probe goes out) and
   * sends what it had never sent. Call once the namespace is reachable, before the tree runs.
   */
  activateSockets(): void {
    for (const c of this.connections.splice(0)) {
      try {
        activateConnection(c.fd, c.img);
      } finally {
        closeFd(c.fd);
      }
    }
  }

  /** Besides what HuskCore ends: the agent's duplicates of restored connections (closed in repair mode: silent). */
  override abort(): void {
    for (const c of this.connections.splice(0)) closeFd(c.fd);
    super.abort();
  }

  /** The agent's own duplicate of one of the husk's descriptors. */
  /**
   * A FIFO reopened on the kernel the checkpointed tree still runs on (a live migration between
   * hosts that share one kernel and file system, as the lab's do, or a rollback target still
   * frozen) is the same pipe, holding the bytes already: writing them again would double them.
   */
  private stillQueued(fd: number, inode: number, data: Buffer): boolean {
    const path = `/proc/${this.pid}/fd/${fd}`;
    return statSync(path).ino === inode && peekFifo(path).equals(data);
  }

  protected agentFd(fd: number): number {
    const pidfd = pidfdOpen(this.pid);
    try {
      return pidfdGetfd(pidfd, fd);
    } finally {
      closeFd(pidfd);
    }
  }

  /** Writes bytes into one of the husk's descriptors from the agent (pidfd_getfd), e.g. data in flight in a pipe. */
  protected agentWrite(fd: number, data: Buffer): void {
    const mine = this.agentFd(fd);
    try {
      let off = 0;
      while (off < data.length) off += writeFd(mine, data.subarray(off));
    } finally {
      closeFd(mine);
    }
  }

  /** Sends datagrams, one by one, through one of the husk's sockets from the agent. */
  protected agentSend(fd: number, messages: readonly Buffer[]): void {
    const mine = this.agentFd(fd);
    try {
      for (const m of messages) sys('sendto', mine, m, m.length, 0x40, 0, 0); // MSG_DONTWAIT
    } finally {
      closeFd(mine);
    }
  }

  restoreFds(fds: readonly FdImage[]): void {
    const leases = new LeaseGuard();
    for (const f of fds) {
      const cloexec = f.cloexec ? 0o2000000 : 0;
      if (f.shared !== undefined && f.dupOf === undefined) {
        const slot = this.parked[f.shared];
        if (!slot) throw new FerryError(ErrorCode.BadImage, `fd ${f.fd} of pid ${this.pid} names shared description ${f.shared}, which the image lacks`);
        const end = f.end ?? ((f.flags & 3) === 0 ? 0 : 1);
        this.inj(this.pid, 'dup3', [end === 2 && slot.rw !== undefined ? slot.rw : end === 0 ? slot.r : slot.w, f.fd, cloexec]);
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
      if (f.content === undefined) leases.check(this.pid, `fd ${f.fd}`, f.path, flags);
      let tmp: bigint;
      try {
        tmp = this.inj(this.pid, 'open', [this.putStr(this.openPath(f.path, f.content)), flags, 0]);
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
      for (const it of f.epoll ?? []) this.register(f.fd, it, fds);
    }
    // Locks last: a write lease needs its description to be the file's only opener (parked duplicates closed),
    // and register() closes fds, which would drop the process's POSIX locks on their files.
    for (const f of fds) {
      if (f.dupOf !== undefined) continue;
      for (const l of f.locks ?? []) {
        const [call, args] = lockCall(f.fd, l, (b) => this.put(OFF_ARGS, b));
        try {
          this.inj(this.pid, call, args);
        } catch (err) {
          throw lockNotTaken(this.pid, f, l, err);
        }
      }
    }
  }

  /**
   * One epoll registration under its own key (file, fd number). When that number now holds
   * another file (or nothing), the registered file is put there just for the epoll_ctl.
   */
  private register(efd: number, it: NonNullable<FdImage['epoll']>[number], fds: readonly FdImage[]): void {
    const ev = Buffer.alloc(12); // struct epoll_event is packed on x86-64
    ev.writeUInt32LE(it.events >>> 0, 0);
    ev.writeBigUInt64LE(fromHex(it.data), 4);
    const add = () => this.inj(this.pid, 'epoll_ctl', [efd, 1, it.tfd, this.put(OFF_ARGS, ev)]);
    if (it.via === undefined) {
      add();
      return;
    }
    const occupant = fds.find((g) => g.fd === it.tfd);
    const parked = occupant ? Number(this.inj(this.pid, 'fcntl', [it.tfd, 1030, 0])) : -1; // F_DUPFD_CLOEXEC
    this.inj(this.pid, 'dup3', [it.via, it.tfd, 0]);
    add();
    if (occupant) {
      this.inj(this.pid, 'dup3', [parked, it.tfd, occupant.cloexec ? 0o2000000 : 0]);
      this.inj(this.pid, 'close', [parked]);
    } else this.inj(this.pid, 'close', [it.tfd]);
  }

  /** eventfd, timerfd, signalfd and epoll instances are made anew with their state. */
  protected createAnonFd(f: FdImage): void {
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
      case 'pidfd':
        // The process it names is a husk already: every husk of the tree exists before any process is built.
        tmp = this.inj(this.pid, 'pidfd_open', [f.pidfd?.pid ?? 0, nb]);
        break;
      default:
        tmp = this.inj(this.pid, 'epoll_create1', [0]);
    }
    if (Number(tmp) !== f.fd) {
      this.inj(this.pid, 'dup3', [tmp, f.fd, f.cloexec ? 0o2000000 : 0]);
      this.inj(this.pid, 'close', [tmp]);
    } else if (f.cloexec) this.inj(this.pid, 'fcntl', [f.fd, 2, 1]);
    if (f.eventfd && fromHex(f.eventfd.count) > 0n) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(fromHex(f.eventfd.count), 0);
      this.agentWrite(f.fd, b);
    }
    const t = f.timerfd;
    const idle = (v: [number, number]) => v[0] === 0 && v[1] === 0;
    // An expired timer shows value 0 until it is read; it must still fire (at once) and keep its interval.
    if (t && (!idle(t.value) || !idle(t.interval) || t.ticks > 0)) {
      const value = idle(t.value) ? [0, 1] : t.value;
      const its = Buffer.alloc(32);
      [t.interval[0], t.interval[1], value[0]!, value[1]!].forEach((v, i) => its.writeBigInt64LE(BigInt(v), i * 8));
      this.inj(this.pid, 'timerfd_settime', [f.fd, 0, this.put(OFF_ARGS, its), 0]);
    }
  }
}
