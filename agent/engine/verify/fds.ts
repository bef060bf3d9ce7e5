// The descriptor table against the image: which fds exist, what each is (kind and target), its
// file status flags and close-on-exec, its offset, which fds share one open file description,
// and the kind-specific state fdinfo shows (eventfd counter, signalfd mask, timerfd clock and
// interval, epoll registrations).
import type { FdImage, Image, ProcessImage } from '../../../shared/image-format.ts';
import { fromHex } from '../../../shared/image-format.ts';
import { Check, type ProcessRef } from './check.ts';
import { type FdReading, type ProcessReading, keyValues } from './reading.ts';

const O_CLOEXEC = 0o2000000;

/** The kind a descriptor's /proc link names; file, dir, chr and fifo are all paths. */
export function kindOf(target: string): string {
  if (target.startsWith('pipe:')) return 'pipe';
  if (target.startsWith('socket:')) return 'socket';
  const anon = /^anon_inode:\[?([a-z]+)\]?/.exec(target);
  if (anon) return anon[1] === 'eventpoll' ? 'epoll' : anon[1]!;
  if (target.startsWith('/memfd:')) return 'memfd';
  return 'path';
}

const imageKind = (f: FdImage): string => (f.kind === 'unix' || f.kind === 'inet' ? 'socket' : ['file', 'dir', 'chr', 'fifo'].includes(f.kind) ? 'path' : f.kind);

/** "pipe:[1234]" -> 1234: the object behind a pipe or socket. */
const inodeOf = (target: string): string | null => /:\[(\d+)\]$/.exec(target)?.[1] ?? null;

/** epoll registrations from fdinfo: "tfd: 5 events: 19 data: 0 ..." lines (hex events and data). */
export function epollEntries(fdinfo: string): string[] {
  const out: string[] = [];
  for (const m of fdinfo.matchAll(/^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)/gm)) out.push(`${m[1]} ${BigInt(`0x${m[2]}`).toString(16)} ${BigInt(`0x${m[3]}`).toString(16)}`);
  return out.sort();
}

function compareOne(c: Check, ref: ProcessRef, f: FdImage, g: FdReading): void {
  const name = `fd ${f.fd}`;
  if (!c.eq(ref, `${name} type`, f.kind === 'memfd' ? 'memfd' : imageKind(f), kindOf(g.target), 'type')) return;
  const info = keyValues(g.fdinfo);
  const flags = Number.parseInt(info.get('flags') ?? 'NaN', 8);
  c.eq(ref, `${name} flags`, `0${f.flags.toString(8)}`, `0${(flags & ~O_CLOEXEC).toString(8)}`, 'flags');
  c.eq(ref, `${name} close-on-exec`, f.cloexec, (flags & O_CLOEXEC) !== 0, 'cloexec');
  if (f.kind === 'file' || f.kind === 'memfd' || f.kind === 'chr') c.eq(ref, `${name} offset`, f.pos, Number(info.get('pos') ?? NaN), 'offset');
  if (['file', 'dir', 'chr', 'fifo', 'memfd'].includes(f.kind)) c.eq(ref, `${name} target`, f.path, g.target, 'target');
  if (f.eventfd) c.eq(ref, `${name} eventfd count`, fromHex(f.eventfd.count), BigInt(`0x${info.get('eventfd-count') ?? 'ffffffffffffffffff'}`), 'eventfd');
  if (f.signalfd) c.eq(ref, `${name} signalfd mask`, fromHex(f.signalfd.mask), BigInt(`0x${info.get('sigmask') ?? 'ffffffffffffffffff'}`), 'signalfd');
  if (f.timerfd) {
    c.eq(ref, `${name} timerfd clock`, f.timerfd.clockid, Number(info.get('clockid') ?? NaN), 'timerfd');
    const iv = /\((\d+),\s*(\d+)\)/.exec(info.get('it_interval') ?? '');
    c.eq(ref, `${name} timerfd interval`, `${f.timerfd.interval[0]}.${f.timerfd.interval[1]}`, iv ? `${iv[1]}.${iv[2]}` : '?', 'timerfd');
  }
  if (f.epoll) {
    const want = f.epoll.map((e) => `${e.tfd} ${e.events.toString(16)} ${fromHex(e.data).toString(16)}`).sort();
    c.eq(ref, `${name} epoll registrations`, want.join(', '), epollEntries(g.fdinfo).join(', '), 'epoll');
  }
}

/**
 * Every process's fds; `readings[i]` belongs to `img.processes[i]`. Sharing is checked across
 * the tree: fds of one image `shared` entry (and dups) must name one object.
 */
export function compareFds(img: Image, readings: readonly ProcessReading[]): Check {
  const c = new Check('fds');
  c.compared('numbers');
  // object behind each shared description (pipe/socket inode), as first seen
  const sharedObj = new Map<string, { ref: string; target: string }>();
  img.processes.forEach((p: ProcessImage, i) => {
    const r = readings[i];
    if (!r) return;
    const ref: ProcessRef = { pid: p.pid, hostPid: r.hostPid };
    const want = new Set(p.fds.map((f) => f.fd));
    for (const fd of r.fds.keys()) if (!want.has(fd)) c.differ(ref, `fd ${fd}`, 'closed', r.fds.get(fd)!.target);
    for (const f of p.fds) {
      const g = r.fds.get(f.fd);
      if (!g) {
        c.differ(ref, `fd ${f.fd}`, `${f.kind} ${f.path}`, 'closed');
        continue;
      }
      compareOne(c, ref, f, g);
      const ino = inodeOf(g.target);
      const key = f.shared !== undefined ? `shared ${f.shared}/${f.end ?? 0}` : f.dupOf !== undefined ? `pid ${p.pid} fd ${f.dupOf}` : null;
      if (key && ino) {
        c.compared('sharing');
        const seen = sharedObj.get(key);
        if (!seen) sharedObj.set(key, { ref: `pid ${p.pid} fd ${f.fd}`, target: g.target });
        else c.eq(ref, `fd ${f.fd} same object as ${seen.ref}`, seen.target, g.target, 'sharing');
      }
      if (f.dupOf === undefined && f.shared === undefined && ino) sharedObj.set(`pid ${p.pid} fd ${f.fd}`, { ref: `pid ${p.pid} fd ${f.fd}`, target: g.target });
    }
  });
  c.skip('locks (POSIX, OFD, leases)', 'restore takes them again or fails; the restored ones are not compared');
  c.skip('socket state and queues', 'not compared (sockets are checked for type, flags and sharing only)');
  c.skip('shared file offsets across processes', 'kcmp not used; each fd offset is compared on its own');
  return c;
}
