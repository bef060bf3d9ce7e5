// Open file descriptions that cross process (or fd) boundaries in a tree: pipes, whose bytes in
// flight must travel without being consumed, and files inherited across fork, whose one offset
// must stay one offset.
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { isWidowed, unixPeerOf, unixTableOf, withTheirFd } from '../sockets/classify.ts';
import { peekUnix } from '../sockets/unix-queues.ts';
import { O, closeFd, ioctl, openFile, pidfdGetfd, pidfdOpen, readFd, sys } from '../../ffi/syscalls.ts';
import type { ProcessImage, SharedImage } from '../../../shared/image-format.ts';

const FIONREAD = 0x541b;
const F_GETPIPE_SZ = 1032;
const F_SETPIPE_SZ = 1031;
const SPLICE_F_NONBLOCK = 2;
const KCMP_FILE = 0;

/** Bytes buffered in a pipe, copied with tee() so the workload still finds them there. */
export function peekPipe(pid: number, fd: number): { data: Buffer; capacity: number } {
  const pidfd = pidfdOpen(pid);
  let mine = -1;
  const priv = [-1, -1];
  try {
    mine = pidfdGetfd(pidfd, fd);
    const capacity = sys('fcntl', mine, F_GETPIPE_SZ);
    const n = Buffer.alloc(4);
    ioctl(mine, FIONREAD, n);
    const pending = n.readInt32LE(0);
    if (pending === 0) return { data: Buffer.alloc(0), capacity };
    const fds = Buffer.alloc(8);
    sys('pipe2', fds, O.CLOEXEC | O.NONBLOCK);
    priv[0] = fds.readInt32LE(0);
    priv[1] = fds.readInt32LE(4);
    if (pending > 65536) sys('fcntl', priv[1]!, F_SETPIPE_SZ, capacity);
    const teed = sys('tee', mine, priv[1]!, pending, SPLICE_F_NONBLOCK);
    if (teed !== pending) throw new Error(`tee copied ${teed} of ${pending} bytes`);
    const data = Buffer.alloc(pending);
    let got = 0;
    while (got < pending) got += readFd(priv[0]!, data.subarray(got));
    return { data, capacity };
  } finally {
    for (const f of [mine, ...priv, pidfd]) if (f >= 0) closeFd(f);
  }
}

/** Bytes in a named pipe, through a reader of our own (the tree may hold only the write end). */
export function peekFifo(src: string): Buffer {
  const fd = openFile(src, O.RDONLY | O.NONBLOCK | O.CLOEXEC);
  const fds = Buffer.alloc(8);
  let priv: number[] = [];
  try {
    const n = Buffer.alloc(4);
    ioctl(fd, FIONREAD, n);
    const pending = n.readInt32LE(0);
    if (pending === 0) return Buffer.alloc(0);
    sys('pipe2', fds, O.CLOEXEC | O.NONBLOCK);
    priv = [fds.readInt32LE(0), fds.readInt32LE(4)];
    if (pending > 65536) sys('fcntl', priv[1]!, F_SETPIPE_SZ, sys('fcntl', fd, F_GETPIPE_SZ));
    if (sys('tee', fd, priv[1]!, pending, SPLICE_F_NONBLOCK) !== pending) throw new FerryError(ErrorCode.Internal, `tee copied less than ${pending} bytes from ${src}`);
    const data = Buffer.alloc(pending);
    let got = 0;
    while (got < pending) got += readFd(priv[0]!, data.subarray(got));
    return data;
  } finally {
    for (const f of [...priv, fd]) closeFd(f);
  }
}

const isDeleted = (path: string): boolean => path.startsWith('/') && path.endsWith(' (deleted)');

/** F_GET_SEALS of a memfd, through a duplicate of the workload's descriptor. */
const memfdSeals = (pid: number, fd: number): number => withTheirFd(pid, fd, (mine) => sys('fcntl', mine, 1034));

/** Where each shared memory object's content is read from at dump time (not part of the image). */
export const shmSources = new Map<number, string>();

const memfdName = (path: string): string => path.replace(/^\/memfd:/, '').replace(/ \(deleted\)$/, '');

/**
 * Links every pipe end and every file description shared between processes to one entry of the
 * image's shared list (fd.shared), and collects pipe contents. Processes are parents first.
 */
export function linkShared(procs: ProcessImage[]): SharedImage[] {
  const shared: SharedImage[] = [];
  shmSources.clear();
  const pipes = new Map<string, number>();
  for (const p of procs) {
    for (const f of p.fds) {
      if (f.kind !== 'pipe' || f.dupOf !== undefined) continue;
      let idx = pipes.get(f.path);
      if (idx === undefined) {
        idx = shared.length;
        pipes.set(f.path, idx);
        shared.push({ kind: 'pipe', inode: Number(/\d+/.exec(f.path)?.[0] ?? 0), capacity: 65536, readFlags: 0, writeFlags: 1, data: '' });
      }
      const e = shared[idx]!;
      if (e.kind !== 'pipe') continue;
      f.shared = idx;
      f.end = (f.flags & 3) === 0 ? 0 : 1;
      if ((f.flags & 3) === 0) {
        e.readFlags = f.flags;
        if (e.data === '') {
          const { data, capacity } = peekPipe(p.pid, f.fd);
          e.data = data.toString('base64');
          e.capacity = capacity;
        }
      } else e.writeFlags = f.flags;
    }
  }
  // FIFOs: one entry per named pipe, whichever of its ends the tree holds.
  const fifos = new Map<number, number>();
  for (const p of procs) {
    for (const f of p.fds) {
      if (f.kind !== 'fifo' || f.dupOf !== undefined) continue;
      const src = `/proc/${p.pid}/fd/${f.fd}`;
      const ino = statSync(src).ino;
      let idx = fifos.get(ino);
      if (idx === undefined) {
        idx = shared.length;
        fifos.set(ino, idx);
        shared.push({ kind: 'fifo', path: f.path, inode: ino, readFlags: -1, writeFlags: -1, data: peekFifo(src).toString('base64') });
      }
      const e = shared[idx]!;
      if (e.kind !== 'fifo') continue;
      f.shared = idx;
      // An O_RDWR description (end 2) is its own reader and writer: reopened so, not split in two.
      f.end = [0, 1, 2][f.flags & 3] ?? 1;
      if (f.end === 0) e.readFlags = f.flags;
      else if (f.end === 1) e.writeFlags = f.flags;
      else e.rdwr = f.flags;
    }
  }
  // Connected unix pairs (socketpairs, or both ends of a named connection): each end with what it has queued to read.
  // A stream whose peer closed is a pair with one end held: restore closes the other end after writing the bytes.
  const pairs = new Map<number, number>();
  for (const p of procs) {
    for (const f of p.fds) {
      if (f.kind !== 'unix' || f.dupOf !== undefined) continue;
      const ino = Number(/\d+/.exec(f.path)?.[0]);
      const u = unixTableOf(p.pid).get(ino);
      if (!u) throw new FerryError(ErrorCode.Unsupported, `pid ${p.pid} fd ${f.fd}: unix socket ${ino} vanished`, { details: { pid: p.pid, fd: f.fd, kind: 'unix socket' } });
      // Unconnected and listening unix sockets are single sockets (sockets.ts), not pairs.
      const peer = unixPeerOf(p.pid, u)?.ino ?? (isWidowed(u) ? 0 : null);
      if (peer === null) continue;
      const key = peer === 0 ? ino : Math.min(ino, peer);
      let idx = pairs.get(key);
      if (idx === undefined) {
        idx = shared.length;
        pairs.set(key, idx);
        shared.push({ kind: 'socketpair', type: u.type, inodes: [key, peer === 0 ? 0 : Math.max(ino, peer)], flags: [2, 2], data: ['', ''] });
      }
      const e = shared[idx]!;
      if (e.kind !== 'socketpair') continue;
      const end = e.inodes[0] === ino ? 0 : 1;
      f.shared = idx;
      f.end = end;
      e.flags[end] = f.flags;
      const queued = peekUnix(p.pid, f.fd, u.type);
      if ('data' in queued) e.data[end] = queued.data.toString('base64');
      else if (queued.messages.length > 0) {
        e.messages ??= [[], []];
        e.messages[end] = queued.messages.map((m) => m.toString('base64'));
      }
    }
  }
  // Shared memory: one object per shmem inode, whether reached through fds or mappings.
  const objs = new Map<number, number>();
  const objFor = (inode: number, name: string, source: string, anon = false): number => {
    let idx = objs.get(inode);
    if (idx === undefined) {
      idx = shared.length;
      objs.set(inode, idx);
      const st = statSync(source);
      shared.push({ kind: 'memfd', name, ...(anon ? { anon } : {}), inode, size: st.size, flags: 2, pos: 0, file: `shm-${idx}.img`, bytes: 0, runs: [] });
      shmSources.set(idx, source);
    }
    return idx;
  };
  for (const p of procs) {
    for (const f of p.fds) {
      if (f.kind !== 'memfd' || f.dupOf !== undefined) continue;
      const src = `/proc/${p.pid}/fd/${f.fd}`;
      const idx = objFor(statSync(src).ino, memfdName(f.path), src);
      const e = shared[idx]!;
      if (e.kind === 'memfd') {
        e.flags = f.flags;
        e.pos = f.pos;
        e.seals = memfdSeals(p.pid, f.fd);
      }
      f.shared = idx;
    }
    for (const v of p.vmas) {
      if (v.kind !== 'shm' || v.inode === undefined) continue;
      const src = `/proc/${p.pid}/map_files/${v.start.slice(2)}-${v.end.slice(2)}`;
      const memfd = v.path?.startsWith('/memfd:') === true;
      v.shared = objFor(v.inode, memfd ? memfdName(v.path!) : 'shared-anon', src, !memfd);
    }
  }
  // Files deleted while open or mapped: their content travels in a shared entry that restore makes again unnamed.
  const contentOf = (source: string, path: string): number => {
    const st = statSync(source);
    const fresh = !objs.has(st.ino);
    const idx = objFor(st.ino, basename(path), source);
    const e = shared[idx]!;
    if (fresh && e.kind === 'memfd') e.deleted = { path: path.replace(/ \(deleted\)$/, ''), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    return idx;
  };
  for (const p of procs) {
    for (const f of p.fds) if (f.kind === 'file' && f.dupOf === undefined && isDeleted(f.path)) f.content = contentOf(`/proc/${p.pid}/fd/${f.fd}`, f.path);
    for (const v of p.vmas)
      if ((v.kind === 'file-private' || v.kind === 'file-shared') && v.path && isDeleted(v.path)) v.shared = contentOf(`/proc/${p.pid}/map_files/${v.start.slice(2)}-${v.end.slice(2)}`, v.path);
  }
  // Files: a description seen in an earlier process (inherited across fork) is shared.
  const seen: { pid: number; fd: number; idx: number | undefined; path: string; flags: number; pos: number }[] = [];
  for (const p of procs) {
    for (const f of p.fds) {
      // Directories and devices too: their status flags (and a directory's read position) are one.
      if (!['file', 'dir', 'chr'].includes(f.kind) || f.dupOf !== undefined) continue;
      const twin = seen.find((s) => s.pid !== p.pid && s.path === f.path && sys('kcmp', s.pid, p.pid, KCMP_FILE, s.fd, f.fd) === 0);
      if (twin) {
        if (twin.idx === undefined) {
          twin.idx = shared.length;
          const content = procs.find((q) => q.pid === twin.pid)?.fds.find((g) => g.fd === twin.fd)?.content;
          shared.push({ kind: 'file', path: twin.path, flags: twin.flags, pos: twin.pos, ...(content === undefined ? {} : { content }) });
          const owner = procs.find((q) => q.pid === twin.pid)?.fds.find((g) => g.fd === twin.fd);
          if (owner) owner.shared = twin.idx;
        }
        f.shared = twin.idx;
      } else seen.push({ pid: p.pid, fd: f.fd, idx: undefined, path: f.path, flags: f.flags, pos: f.pos });
    }
  }
  return shared;
}
