// Typed libc wrappers: each checks the return value and turns errno into a FerryError with the
// call name, so no caller ever sees a bare -1.
import { constants } from 'node:os';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { SYS, addressOf, asLong, getErrno, libc, setErrno } from './libc.ts';

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));
export const errnoName = (errno: number): string => errnoNames.get(errno) ?? `E${errno}`;

export class SyscallError extends FerryError {
  readonly errno: number;
  constructor(call: string, errno: number, extra: Record<string, unknown> = {}) {
    super(ErrorCode.Syscall, `${call} failed: ${errnoName(errno)}`, { details: { call, errno, errnoName: errnoName(errno), ...extra } });
    this.errno = errno;
  }
}

export const isErrno = (err: unknown, name: string): boolean => err instanceof SyscallError && errnoName(err.errno) === name;

/** Runs a libc call that signals failure with -1 and errno; returns its result as a number. */
export function check(call: string, fn: () => unknown, extra?: Record<string, unknown>): number {
  setErrno(0);
  const r = asLong(fn());
  if (r === -1n) throw new SyscallError(call, getErrno(), extra);
  return Number(r);
}

export type Arg = number | bigint | Buffer | null;
const argOf = (a: Arg | undefined): unknown => {
  if (a === undefined || a === null) return 0;
  if (typeof a === 'number') return a < 0 ? BigInt.asUintN(64, BigInt(a)) : a;
  if (typeof a === 'bigint') return BigInt.asUintN(64, a);
  return a;
};

/** A raw syscall on the agent itself. */
export function sys(name: keyof typeof SYS, ...args: Arg[]): number {
  const nr = SYS[name];
  return check(name, () => libc.syscall(nr, argOf(args[0]), argOf(args[1]), argOf(args[2]), argOf(args[3]), argOf(args[4]), argOf(args[5])));
}

export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: 0o200000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

export const openFile = (path: string, flags: number, mode = 0): number => check('open', () => libc.open(path, flags, mode), { path });
export const closeFd = (fd: number): void => {
  check('close', () => libc.close(fd));
};
export const ioctl = (fd: number, req: number, arg: Buffer | number | bigint): number =>
  check('ioctl', () => libc.ioctl(fd, req, typeof arg === 'number' || typeof arg === 'bigint' ? argOf(arg) : arg), { req: `0x${req.toString(16)}` });
export const pread = (fd: number, buf: Buffer, off: number): number => check('pread', () => libc.pread(fd, buf, buf.length, off));
export const pwrite = (fd: number, buf: Buffer, off: number): number => check('pwrite', () => libc.pwrite(fd, buf, buf.length, off));
export const readFd = (fd: number, buf: Buffer): number => check('read', () => libc.read(fd, buf, buf.length));
export const writeFd = (fd: number, buf: Buffer): number => check('write', () => libc.write(fd, buf, buf.length));
/**
 * Waits (on libuv's thread pool, not the event loop) until one of `fds` is readable or the
 * timeout passes; resolves with the readable ones (and those in error or hung up).
 */
export function pollReadable(fds: readonly number[], timeoutMs: number): Promise<number[]> {
  const buf = Buffer.alloc(fds.length * 8);
  fds.forEach((fd, i) => {
    buf.writeInt32LE(fd, i * 8);
    buf.writeInt16LE(1, i * 8 + 4); // POLLIN
  });
  return new Promise((resolve, reject) => {
    (libc.poll as unknown as { async: (...a: unknown[]) => void }).async(buf, fds.length, timeoutMs, (err: unknown, res: unknown) => {
      if (err) return reject(err as Error);
      if (Number(res) < 0) return resolve([]);
      resolve(fds.filter((_, i) => buf.readInt16LE(i * 8 + 6) !== 0));
    });
  });
}

export const killPid = (pid: number, sig: number): void => {
  check('kill', () => libc.kill(pid, sig), { pid, sig });
};

export const WNOHANG = 1;
export const WALL = 0x40000000;

/** waitpid; returns [pid, status] with pid 0 when WNOHANG found nothing. */
export function waitpid(pid: number, options: number): [number, number] {
  const st = [0];
  const r = check('waitpid', () => libc.waitpid(pid, st, options), { pid });
  return [r, st[0] ?? 0];
}

const IOV = 16;
/** Builds an iovec array; the returned buffers must stay referenced until the call returns. */
function iovecs(ranges: ReadonlyArray<{ addr: bigint; len: number; buf?: Buffer }>): Buffer {
  const v = Buffer.alloc(ranges.length * IOV);
  ranges.forEach((r, i) => {
    v.writeBigUInt64LE(r.buf ? addressOf(r.buf) : r.addr, i * IOV);
    v.writeBigUInt64LE(BigInt(r.len), i * IOV + 8);
  });
  return v;
}

/** Reads one remote range into `dst` (whole length). Partial reads are an error: the caller asked for mapped memory. */
export function vmRead(pid: number, remote: bigint, dst: Buffer): void {
  const local = iovecs([{ addr: 0n, len: dst.length, buf: dst }]);
  const rem = iovecs([{ addr: remote, len: dst.length }]);
  const n = check('process_vm_readv', () => libc.processVmReadv(pid, local, 1, rem, 1, 0), { pid, addr: `0x${remote.toString(16)}` });
  if (n !== dst.length) throw new SyscallError('process_vm_readv', 14, { pid, short: n, wanted: dst.length });
}

export function vmWrite(pid: number, remote: bigint, src: Buffer): void {
  const local = iovecs([{ addr: 0n, len: src.length, buf: src }]);
  const rem = iovecs([{ addr: remote, len: src.length }]);
  const n = check('process_vm_writev', () => libc.processVmWritev(pid, local, 1, rem, 1, 0), { pid, addr: `0x${remote.toString(16)}` });
  if (n !== src.length) throw new SyscallError('process_vm_writev', 14, { pid, short: n, wanted: src.length });
}

export const pidfdOpen = (pid: number): number => sys('pidfd_open', pid, 0);
export const pidfdGetfd = (pidfd: number, fd: number): number => sys('pidfd_getfd', pidfd, fd, 0);

/** A range of another process's memory; addresses below 2^53 fit a double. */
export interface RemoteSpan {
  addr: number;
  len: number;
}

const IOV_MAX = 1024;
const TWO32 = 2 ** 32;

/**
 * Moves bytes between consecutive bytes of `local` and scattered spans of another process, up
 * to IOV_MAX spans per call. Returns how many bytes moved: the kernel stops at the first span it
 * cannot access (unmapped meanwhile), so a short count names where to resume.
 */
function vmSpans(call: 'process_vm_readv' | 'process_vm_writev', pid: number, spans: readonly RemoteSpan[], local: Buffer): number {
  const fn = call === 'process_vm_readv' ? libc.processVmReadv : libc.processVmWritev;
  const remote = Buffer.alloc(Math.min(spans.length, IOV_MAX) * IOV);
  const words = new Uint32Array(remote.buffer, remote.byteOffset, remote.length / 4);
  const one = Buffer.alloc(IOV);
  const base = addressOf(local);
  let done = 0;
  for (let i = 0; i < spans.length; i += IOV_MAX) {
    const n = Math.min(IOV_MAX, spans.length - i);
    let want = 0;
    for (let k = 0; k < n; k++) {
      const s = spans[i + k]!;
      words[k * 4] = s.addr % TWO32;
      words[k * 4 + 1] = Math.floor(s.addr / TWO32);
      words[k * 4 + 2] = s.len;
      words[k * 4 + 3] = 0;
      want += s.len;
    }
    one.writeBigUInt64LE(base + BigInt(done), 0);
    one.writeBigUInt64LE(BigInt(want), 8);
    setErrno(0);
    const r = Number(asLong(fn(pid, one, 1, remote, n, 0)));
    if (r < 0) {
      const e = getErrno();
      if (e === 14 || e === 12) return done; // EFAULT/ENOMEM: the first span is gone
      throw new SyscallError(call, e, { pid });
    }
    done += r;
    if (r < want) return done;
  }
  return done;
}

export const vmReadSpans = (pid: number, spans: readonly RemoteSpan[], local: Buffer): number => vmSpans('process_vm_readv', pid, spans, local);
export const vmWriteSpans = (pid: number, spans: readonly RemoteSpan[], local: Buffer): number => vmSpans('process_vm_writev', pid, spans, local);
