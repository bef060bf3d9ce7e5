// Shared descriptions of a tree (sharing.ts reads them), made again once in the root husk before
// any child exists: pipes and FIFOs with their data, socketpairs with their queues, memfds and
// shared anonymous memory with their content, deleted files, sockets (sockets/restore.ts) and
// files inherited across fork. Children inherit them parked on high fd numbers and dup what they
// use into place (restore-fds.ts).
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { type SharedImage, fromHex } from '../../../shared/image-format.ts';
import { closeFd, pwrite, vmRead } from '../../ffi/syscalls.ts';
import { LeaseGuard } from './lock-sharing.ts';
import { PagesReader } from '../memory/memory.ts';
import { type HeldConnection, type HuskProcess, OFF_ARGS, agentFd, agentSend, agentWrite } from '../process/husk-core.ts';
import { peekFifo } from './sharing.ts';
import { createSocket, restoreConnection } from '../sockets/restore.ts';

/**
 * A descriptor for a new MAP_SHARED|MAP_ANONYMOUS object (the kernel names it /dev/zero, as the
 * workload's mapping was named): mapped once by the husk, opened through map_files, unmapped.
 */
function sharedAnonFd(h: HuskProcess, size: number): bigint {
  const addr = h.inj(h.pid, 'mmap', [0, size, 3, 0x21, -1, 0]); // PROT_READ|WRITE, MAP_SHARED|ANONYMOUS
  try {
    return h.inj(h.pid, 'open', [h.putStr(`/proc/self/map_files/${addr.toString(16)}-${(addr + BigInt(size)).toString(16)}`), 2, 0]);
  } finally {
    h.inj(h.pid, 'munmap', [addr, size]);
  }
}

/**
 * A deleted file made again: unnamed (O_TMPFILE) in its old directory, with its owner and
 * mode, so it stays on the same filesystem and shows as deleted; a memfd where that fails.
 */
function unnamedFile(h: HuskProcess, d: { path: string; mode: number; uid: number; gid: number }, name: string): bigint {
  let fd: bigint;
  try {
    fd = h.inj(h.pid, 'open', [h.putStr(dirname(d.path)), 0o20200000 | 2, d.mode]); // O_TMPFILE | O_RDWR
  } catch {
    return h.inj(h.pid, 'memfd_create', [h.putStr(name), 0]);
  }
  h.inj(h.pid, 'fchown', [fd, d.uid, d.gid]);
  h.inj(h.pid, 'fchmod', [fd, d.mode]);
  return nameAsDeleted(h, fd, d.path);
}

/**
 * The file linked under the deleted file's old name for a moment, opened there and unlinked
 * again, so that its /proc name is "PATH (deleted)" as before, not "DIR/#INODE (deleted)" (the
 * unnamed file's own descriptor keeps that name: it is closed). Left unnamed when that name is
 * taken now (a live migration's verification then reports the difference).
 */
function nameAsDeleted(h: HuskProcess, fd: bigint, path: string): bigint {
  const from = h.put(OFF_ARGS, Buffer.from(`/proc/self/fd/${fd}\0`));
  try {
    h.inj(h.pid, 'linkat', [-100, from, -100, h.putStr(path), 0x400]); // AT_FDCWD, AT_SYMLINK_FOLLOW
  } catch {
    return fd;
  }
  try {
    const named = h.inj(h.pid, 'open', [h.putStr(path), 2, 0]); // O_RDWR
    h.inj(h.pid, 'close', [fd]);
    return named;
  } catch {
    return fd;
  } finally {
    h.inj(h.pid, 'unlinkat', [-100, h.putStr(path), 0]);
  }
}

/** Where a file description is opened from: its path, or the parked unnamed file that carries a deleted file's content. */
export function openPath(h: HuskProcess, path: string, content: number | undefined): string {
  if (content === undefined) return path;
  const slot = h.parked[content];
  if (!slot) throw new FerryError(ErrorCode.BadImage, `pid ${h.pid}: ${path} names shared content ${content}, which the image lacks`);
  return `/proc/self/fd/${slot.r}`;
}

/**
 * Creates every shared description in this (root) husk on fds from `base` up, before any
 * child exists: children inherit them and dup what they use into place. Pipe contents are
 * written from the agent through pidfd_getfd.
 */
export function createShared(h: HuskProcess, shared: readonly SharedImage[], base: number, dir: string): void {
  h.parkBase = base;
  let next = base;
  const leases = new LeaseGuard();
  const pendingConnections: HeldConnection[] = [];
  for (const sh of shared) {
    if (sh.kind === 'pipe') {
      const fds = h.put(OFF_ARGS, Buffer.alloc(8));
      h.inj(h.pid, 'pipe2', [fds, 0]);
      const b = Buffer.alloc(8);
      vmRead(h.pid, fds, b);
      const r = next++;
      const w = next++;
      h.inj(h.pid, 'dup3', [b.readInt32LE(0), r, 0]);
      h.inj(h.pid, 'dup3', [b.readInt32LE(4), w, 0]);
      h.inj(h.pid, 'close', [b.readInt32LE(0)]);
      h.inj(h.pid, 'close', [b.readInt32LE(4)]);
      if (sh.capacity !== 65536) h.inj(h.pid, 'fcntl', [w, 1031, sh.capacity]); // F_SETPIPE_SZ
      const data = Buffer.from(sh.data, 'base64');
      if (data.length > 0) agentWrite(h.pid, w, data);
      // Status flags live on the description, so setting them once here sets them for every holder.
      h.inj(h.pid, 'fcntl', [r, 4, sh.readFlags & ~3]); // F_SETFL
      h.inj(h.pid, 'fcntl', [w, 4, sh.writeFlags & ~3]);
      h.parked.push({ r, w });
    } else if (sh.kind === 'fifo') {
      // The read end first and non-blocking, so neither open waits for a peer; flags are set afterwards.
      const r = next++;
      const w = next++;
      const tr = h.inj(h.pid, 'open', [h.putStr(sh.path), 0o4000, 0]);
      h.inj(h.pid, 'dup3', [tr, r, 0]);
      h.inj(h.pid, 'close', [tr]);
      const tw = h.inj(h.pid, 'open', [h.putStr(sh.path), 0o4000 | 1, 0]);
      h.inj(h.pid, 'dup3', [tw, w, 0]);
      h.inj(h.pid, 'close', [tw]);
      let rw: number | undefined;
      if (sh.rdwr !== undefined) {
        rw = next++;
        const t = h.inj(h.pid, 'open', [h.putStr(sh.path), 0o4000 | 2, 0]);
        h.inj(h.pid, 'dup3', [t, rw, 0]);
        h.inj(h.pid, 'close', [t]);
        h.inj(h.pid, 'fcntl', [rw, 4, sh.rdwr & ~3]);
      }
      const data = Buffer.from(sh.data, 'base64');
      if (data.length > 0 && !stillQueued(h, r, sh.inode, data)) agentWrite(h.pid, w, data);
      if (sh.readFlags >= 0) h.inj(h.pid, 'fcntl', [r, 4, sh.readFlags & ~3]);
      if (sh.writeFlags >= 0) h.inj(h.pid, 'fcntl', [w, 4, sh.writeFlags & ~3]);
      h.parked.push({ r, w, ...(rw === undefined ? {} : { rw }) });
    } else if (sh.kind === 'socketpair') {
      const sv = h.put(OFF_ARGS, Buffer.alloc(8));
      h.inj(h.pid, 'socketpair', [1, sh.type, 0, sv]);
      const b = Buffer.alloc(8);
      vmRead(h.pid, sv, b);
      const ends = [next++, next++];
      for (let i = 0; i < 2; i++) {
        h.inj(h.pid, 'dup3', [b.readInt32LE(i * 4), ends[i]!, 0]);
        h.inj(h.pid, 'close', [b.readInt32LE(i * 4)]);
      }
      // What end i had queued to read was sent by the other end.
      for (let i = 0; i < 2; i++) {
        const data = Buffer.from(sh.data[i]!, 'base64');
        if (data.length > 0) agentWrite(h.pid, ends[1 - i]!, data);
        const msgs = sh.messages?.[i] ?? [];
        if (msgs.length > 0) agentSend(h.pid, ends[1 - i]!, msgs.map((m) => Buffer.from(m, 'base64')));
      }
      for (let i = 0; i < 2; i++) h.inj(h.pid, 'fcntl', [ends[i]!, 4, sh.flags[i]! & ~3]);
      h.parked.push({ r: ends[0]!, w: ends[1]! });
    } else if (sh.kind === 'memfd') {
      const fd = next++;
      const sealing = !sh.anon && sh.seals !== undefined && sh.seals !== 1; // F_SEAL_SEAL alone: made without MFD_ALLOW_SEALING
      const tmp = sh.anon
        ? sharedAnonFd(h, sh.size)
        : sh.deleted
          ? unnamedFile(h, sh.deleted, sh.name)
          : h.inj(h.pid, 'memfd_create', [h.putStr(sh.name), sealing ? 2 : 0]);
      h.inj(h.pid, 'dup3', [tmp, fd, 0]);
      h.inj(h.pid, 'close', [tmp]);
      h.inj(h.pid, 'ftruncate', [fd, sh.size]);
      const reader = new PagesReader(join(dir, sh.file));
      try {
        const mine = agentFd(h.pid, fd);
        try {
          for (const run of sh.runs) pwrite(mine, reader.read(run), Number(fromHex(run.addr)));
        } finally {
          closeFd(mine);
        }
      } finally {
        reader.close();
      }
      // Runs are whole pages: the last one may have written past the end.
      h.inj(h.pid, 'ftruncate', [fd, sh.size]);
      if (sh.pos > 0) h.inj(h.pid, 'lseek', [fd, sh.pos, 0]);
      // Seals once the content is in (F_SEAL_WRITE would refuse it); status flags live on the description.
      if (sealing && sh.seals) h.inj(h.pid, 'fcntl', [fd, 1033, sh.seals]); // F_ADD_SEALS
      h.inj(h.pid, 'fcntl', [fd, 4, sh.flags & ~3]);
      h.parked.push({ r: fd, w: fd });
    } else if (sh.kind === 'inet' || sh.kind === 'unix-socket') {
      const fd = next++;
      const c = createSocket(h, sh, fd);
      if (c) pendingConnections.push(c);
      h.parked.push({ r: fd, w: fd });
    } else {
      const fd = next++;
      if (sh.content === undefined) leases.check(h.pid, 'a description shared across fork', sh.path, sh.flags);
      const tmp = h.inj(h.pid, 'open', [h.putStr(openPath(h, sh.path, sh.content)), sh.flags & ~(0o100 | 0o200 | 0o1000), 0]);
      h.inj(h.pid, 'dup3', [tmp, fd, 0]);
      h.inj(h.pid, 'close', [tmp]);
      if (sh.pos > 0) h.inj(h.pid, 'lseek', [fd, sh.pos, 0]);
      h.parked.push({ r: fd, w: fd });
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
export function inheritParked(h: HuskProcess, root: HuskProcess, rootPid: number): void {
  h.parkBase = root.parkBase;
  h.parked = root.parked;
  const fds = [...new Set(root.parked.flatMap((s) => [s.r, s.w, ...(s.rw === undefined ? [] : [s.rw])]))];
  if (fds.length === 0) return;
  const pidfd = Number(h.inj(h.pid, 'pidfd_open', [rootPid, 0]));
  try {
    for (const fd of fds) {
      const got = Number(h.inj(h.pid, 'pidfd_getfd', [pidfd, fd, 0]));
      if (got === fd) continue;
      h.inj(h.pid, 'dup3', [got, fd, 0]);
      h.inj(h.pid, 'close', [got]);
    }
  } finally {
    h.inj(h.pid, 'close', [pidfd]);
  }
}

/**
 * A FIFO reopened on the kernel the checkpointed tree still runs on (a live migration between
 * hosts that share one kernel and file system, as the lab's do, or a rollback target still
 * frozen) is the same pipe, holding the bytes already: writing them again would double them.
 */
function stillQueued(h: HuskProcess, fd: number, inode: number, data: Buffer): boolean {
  const path = `/proc/${h.pid}/fd/${fd}`;
  return statSync(path).ino === inode && peekFifo(path).equals(data);
}
