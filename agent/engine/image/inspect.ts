// A summary of an image directory, with every page checksum verified: what `ferry image inspect` shows.
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { Image, InetAddr, Machine, SharedImage } from '../../../shared/image-format.ts';
import { readImage } from './image-io.ts';
import { PagesReader } from '../memory/memory.ts';

export interface ImageSummary {
  dir: string;
  version: number;
  createdAt: string;
  root: number;
  machine: Machine;
  checksums: 'ok';
  shared: Record<string, unknown>[];
  processes: {
    pid: number;
    ppid: number;
    comm: string;
    exe: string;
    threads: number[];
    vmas: number;
    pageRuns: number;
    pagesBytes: number;
    fds: { fd: number; kind: string; path: string; pos: number }[];
  }[];
  stats: Image['stats'];
}

export function inspectImage(dir: string): ImageSummary {
  const img = readImage(dir);
  for (const p of img.processes) {
    const r = new PagesReader(join(dir, p.pagesFile));
    try {
      for (const v of p.vmas) for (const run of v.runs) r.read(run);
    } catch (err) {
      if (err instanceof FerryError) throw err;
      throw new FerryError(ErrorCode.BadImage, `${p.pagesFile}: ${(err as Error).message}`, { cause: err });
    } finally {
      r.close();
    }
  }
  for (const sh of img.shared) {
    if (sh.kind !== 'memfd') continue;
    const r = new PagesReader(join(dir, sh.file));
    try {
      for (const run of sh.runs) r.read(run);
    } finally {
      r.close();
    }
  }
  return {
    dir,
    shared: img.shared.map(summarizeShared),
    version: img.version,
    createdAt: img.createdAt,
    root: img.root,
    machine: img.machine,
    checksums: 'ok',
    processes: img.processes.map((p) => ({
      pid: p.pid,
      ppid: p.ppid,
      comm: p.comm,
      exe: p.exe,
      threads: p.threads.map((t) => t.tid),
      vmas: p.vmas.length,
      pageRuns: p.vmas.reduce((a, v) => a + v.runs.length, 0),
      pagesBytes: p.pagesBytes,
      fds: p.fds.map((f) => ({ fd: f.fd, kind: f.kind, path: f.path, pos: f.pos })),
    })),
    stats: img.stats,
  };
}

const b64len = (d: string): number => Buffer.from(d, 'base64').length;

function summarizeShared(sh: SharedImage): Record<string, unknown> {
  switch (sh.kind) {
    case 'pipe':
    case 'fifo':
      return { kind: sh.kind, inode: sh.inode, buffered: b64len(sh.data) };
    case 'memfd':
      return { kind: sh.kind, name: sh.name, size: sh.size };
    case 'file':
      return { kind: sh.kind, path: sh.path, pos: sh.pos };
    case 'socketpair':
      return { kind: sh.kind, type: sh.type, queued: sh.data.map(b64len) };
    case 'unix-socket':
      return { kind: sh.kind, type: sh.type, name: sh.name, listening: sh.listening };
    case 'inet': {
      const at = (a: InetAddr | null) => (a ? `${sh.family === 10 ? `[${a.ip}]` : a.ip}:${a.port}` : null);
      const queued = sh.tcp ? { send: b64len(sh.tcp.sendQueue), unsent: sh.tcp.unsent, receive: b64len(sh.tcp.recvQueue) } : undefined;
      return { kind: sh.kind, protocol: sh.type === 1 ? 'tcp' : 'udp', state: sh.state, local: at(sh.local), remote: at(sh.remote), ...(queued ? { queued } : {}) };
    }
  }
}
