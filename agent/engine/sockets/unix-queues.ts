// What a unix socket of a frozen tree has queued to read, copied without consuming it. Stream
// sockets give their bytes to one peek; datagram and seqpacket sockets keep message boundaries,
// so each message is peeked in turn by stepping SO_PEEK_OFF across the queue (then set back).
import { SOL, getIntOpt, setIntOpt } from '../../ffi/sockets.ts';
import { SyscallError, ioctl, sys } from '../../ffi/syscalls.ts';
import { withTheirFd } from './classify.ts';

const FIONREAD = 0x541b;
const EAGAIN = 11;
const SO_PEEK_OFF = 42;
const MSG = { PEEK: 2, DONTWAIT: 0x40, TRUNC: 0x20 } as const;
/** Larger than any datagram a unix socket can queue (its send buffer bounds it). */
const MAX_MESSAGE = 1 << 22;

export function peekStream(s: number): Buffer {
  const n = Buffer.alloc(4);
  ioctl(s, FIONREAD, n);
  const pending = n.readInt32LE(0);
  if (pending === 0) return Buffer.alloc(0);
  const buf = Buffer.alloc(pending);
  const got = sys('recvfrom', s, buf, pending, MSG.PEEK | MSG.DONTWAIT, 0, 0);
  return buf.subarray(0, got);
}

export function peekMessages(s: number): Buffer[] {
  const saved = getIntOpt(s, SOL.SOCKET, SO_PEEK_OFF);
  const out: Buffer[] = [];
  let buf: Buffer | null = null;
  setIntOpt(s, SOL.SOCKET, SO_PEEK_OFF, 0);
  try {
    for (;;) {
      buf ??= Buffer.alloc(MAX_MESSAGE);
      let n: number;
      try {
        n = sys('recvfrom', s, buf, buf.length, MSG.PEEK | MSG.DONTWAIT | MSG.TRUNC, 0, 0);
      } catch (err) {
        if (err instanceof SyscallError && err.errno === EAGAIN) return out;
        throw err;
      }
      out.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    setIntOpt(s, SOL.SOCKET, SO_PEEK_OFF, saved);
  }
}

/** What one end of a unix pair has queued: bytes (stream) or messages. */
export function peekUnix(pid: number, fd: number, type: number): { data: Buffer } | { messages: Buffer[] } {
  return withTheirFd(pid, fd, (s) => (type === 1 ? { data: peekStream(s) } : { messages: peekMessages(s) }));
}
