// A TCP connection carried through TCP_REPAIR: its sequence numbers, both queues, the negotiated
// options and window are read from a frozen socket and written into a fresh one, which then
// takes over the connection without a handshake. The peer must see silence meanwhile (the
// network lock): a socket in repair mode still acknowledges what arrives.
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import type { InetState, TcpRepair } from '../../../shared/image-format.ts';
import { MSG, SOL, SO, bindTo, connectTo, getIntOpt, getOpt, peekBytes, sendBytes, setIntOpt, setOpt, type SockAddr } from '../../ffi/sockets.ts';
import { SyscallError, ioctl, sys } from '../../ffi/syscalls.ts';

export const TCP = {
  NODELAY: 1,
  MAXSEG: 2,
  KEEPIDLE: 4,
  KEEPINTVL: 5,
  KEEPCNT: 6,
  INFO: 11,
  REPAIR: 19,
  REPAIR_QUEUE: 20,
  QUEUE_SEQ: 21,
  REPAIR_OPTIONS: 22,
  TIMESTAMP: 24,
  REPAIR_WINDOW: 29,
} as const;
const QUEUE = { NONE: 0, RECV: 1, SEND: 2 } as const;
const REPAIR_OFF = 0; // leaving repair sends a window probe, which also re-teaches bridges where the socket is
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;
const TCPI_OPT = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4 } as const;
const TCPOPT = { MSS: 2, WINDOW: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;

/** Kernel TCP states (tcp_states.h) and what the engine calls them. */
export const TCP_STATES: Record<number, string> = {
  1: 'established',
  2: 'syn-sent',
  3: 'syn-recv',
  4: 'fin-wait1',
  5: 'fin-wait2',
  6: 'time-wait',
  7: 'closed',
  8: 'close-wait',
  9: 'last-ack',
  10: 'listen',
  11: 'closing',
};
export const CARRIED_TCP_STATES = new Set(['established', 'fin-wait1', 'fin-wait2', 'closed', 'listen']);

export interface TcpInfo {
  state: string;
  options: number;
  sndWscale: number;
  rcvWscale: number;
  /** For a listener: connections waiting to be accepted, and its backlog. */
  acceptQueue: number;
  backlog: number;
  /** Segments sent and received over the socket's life (tcpi_segs_out/in): 0 for one that never took part in a connection. */
  segments: number;
}

export function tcpInfo(fd: number): TcpInfo {
  const b = getOpt(fd, SOL.TCP, TCP.INFO, 232);
  const ws = b[6] ?? 0;
  return { state: TCP_STATES[b[0] ?? 0] ?? `state ${b[0]}`, options: b[5] ?? 0, sndWscale: ws & 0xf, rcvWscale: ws >> 4, acceptQueue: b.readUInt32LE(24), backlog: b.readUInt32LE(28), segments: b.readUInt32LE(136) + b.readUInt32LE(140) };
}

const queueLen = (fd: number, req: number): number => {
  const b = Buffer.alloc(4);
  ioctl(fd, req, b);
  return b.readInt32LE(0);
};

function queueSeq(fd: number, q: number): number {
  setIntOpt(fd, SOL.TCP, TCP.REPAIR_QUEUE, q);
  return getOpt(fd, SOL.TCP, TCP.QUEUE_SEQ, 4).readUInt32LE(0);
}

const u32 = (v: number): number => (v + 0x1_0000_0000) % 0x1_0000_0000;

/** Puts the socket into repair mode: from here it neither sends nor times out; closing it sends nothing. */
export const enterRepair = (fd: number): void => setIntOpt(fd, SOL.TCP, TCP.REPAIR, 1);

/** Everything a fresh socket needs to continue the connection; the socket must be in repair mode. */
export function dumpTcp(fd: number, state: InetState): TcpRepair {
  const info = tcpInfo(fd);
  const outq = queueLen(fd, SIOCOUTQ);
  const notSent = queueLen(fd, SIOCOUTQNSD);
  const inq = queueLen(fd, SIOCINQ);
  const recvNext = queueSeq(fd, QUEUE.RECV);
  const recvQueue = peekBytes(fd, inq);
  const writeSeq = queueSeq(fd, QUEUE.SEND);
  // A FIN we queued counts in write_seq and in the queue lengths but is no byte of data.
  const finQueued = state === 'fin-wait1' || state === 'fin-wait2';
  const fin: TcpRepair['fin'] = !finQueued ? 'none' : state === 'fin-wait1' && notSent > 0 ? 'unsent' : 'sent';
  const dataLen = state === 'fin-wait1' ? outq - 1 : outq;
  const sendQueue = peekBytes(fd, dataLen);
  setIntOpt(fd, SOL.TCP, TCP.REPAIR_QUEUE, QUEUE.NONE);
  if (recvQueue.length !== inq || sendQueue.length !== dataLen)
    throw new FerryError(ErrorCode.Internal, `TCP queues changed while being read (receive ${recvQueue.length}/${inq}, send ${sendQueue.length}/${dataLen}): is the network locked?`);
  const w = getOpt(fd, SOL.TCP, TCP.REPAIR_WINDOW, 20);
  return {
    // fin-wait2: the acknowledged FIN is the last sequence number; the queue starts just before it.
    sendSeq: u32(writeSeq - outq - (state === 'fin-wait2' ? 1 : 0)),
    recvSeq: u32(recvNext - inq),
    sendQueue: sendQueue.toString('base64'),
    unsent: fin === 'unsent' ? notSent - 1 : notSent,
    recvQueue: recvQueue.toString('base64'),
    fin,
    mss: getIntOpt(fd, SOL.TCP, TCP.MAXSEG),
    wscale: info.options & TCPI_OPT.WSCALE ? { snd: info.sndWscale, rcv: info.rcvWscale } : null,
    sack: (info.options & TCPI_OPT.SACK) !== 0,
    timestamps: (info.options & TCPI_OPT.TIMESTAMPS) !== 0,
    timestamp: getOpt(fd, SOL.TCP, TCP.TIMESTAMP, 4).readUInt32LE(0),
    window: { sndWl1: w.readUInt32LE(0), sndWnd: w.readUInt32LE(4), maxWindow: w.readUInt32LE(8), rcvWnd: w.readUInt32LE(12), rcvWup: w.readUInt32LE(16) },
  };
}

const ENOMEM = 12;
const EAGAIN = 11;

/** Writes a whole queue in chunks; where the buffer is too small for it, the buffer grows (forced) and the chunk shrinks. */
function writeQueue(fd: number, data: Buffer, bufOpt: number): void {
  let chunk = 65536;
  for (let off = 0; off < data.length; ) {
    try {
      off += sendBytes(fd, data.subarray(off, off + chunk), MSG.DONTWAIT | MSG.NOSIGNAL);
    } catch (err) {
      if (!(err instanceof SyscallError) || (err.errno !== ENOMEM && err.errno !== EAGAIN)) throw err;
      if (chunk > 4096) chunk >>= 1;
      else setIntOpt(fd, SOL.SOCKET, bufOpt, getIntOpt(fd, SOL.SOCKET, bufOpt === SO.SNDBUFFORCE ? SO.SNDBUF : SO.RCVBUF) + data.length - off + 65536);
    }
  }
}

/**
 * Turns a fresh TCP socket into the dumped connection, still in repair mode: nothing reaches the
 * peer until activateTcp(). The local address may not be configured yet (IP_FREEBIND).
 */
export function restoreTcp(fd: number, t: TcpRepair, local: SockAddr, remote: SockAddr): void {
  enterRepair(fd);
  setIntOpt(fd, SOL.TCP, TCP.REPAIR_QUEUE, QUEUE.RECV);
  setIntOpt(fd, SOL.TCP, TCP.QUEUE_SEQ, t.recvSeq | 0);
  setIntOpt(fd, SOL.TCP, TCP.REPAIR_QUEUE, QUEUE.SEND);
  setIntOpt(fd, SOL.TCP, TCP.QUEUE_SEQ, t.sendSeq | 0);
  bindTo(fd, local);
  connectTo(fd, remote); // no SYN in repair mode: the socket is established at once
  const opts: [number, number][] = [[TCPOPT.MSS, t.mss]];
  if (t.wscale) opts.push([TCPOPT.WINDOW, t.wscale.snd | (t.wscale.rcv << 16)]);
  if (t.sack) opts.push([TCPOPT.SACK_PERM, 0]);
  if (t.timestamps) opts.push([TCPOPT.TIMESTAMP, 0]);
  const ob = Buffer.alloc(opts.length * 8);
  opts.forEach(([code, val], i) => {
    ob.writeUInt32LE(code, i * 8);
    ob.writeUInt32LE(val >>> 0, i * 8 + 4);
  });
  setOpt(fd, SOL.TCP, TCP.REPAIR_OPTIONS, ob);
  const ts = Buffer.alloc(4);
  ts.writeUInt32LE(t.timestamp, 0);
  setOpt(fd, SOL.TCP, TCP.TIMESTAMP, ts);
  const recvQueue = Buffer.from(t.recvQueue, 'base64');
  const sendQueue = Buffer.from(t.sendQueue, 'base64');
  setIntOpt(fd, SOL.TCP, TCP.REPAIR_QUEUE, QUEUE.RECV);
  writeQueue(fd, recvQueue, SO.RCVBUFFORCE);
  // In repair mode the send queue is taken as sent and unacknowledged: only what had been sent goes in now.
  setIntOpt(fd, SOL.TCP, TCP.REPAIR_QUEUE, QUEUE.SEND);
  writeQueue(fd, sendQueue.subarray(0, sendQueue.length - t.unsent), SO.SNDBUFFORCE);
  // A FIN already sent is queued as sent too: shutdown in repair mode transmits nothing.
  if (t.fin === 'sent') sys('shutdown', fd, 1);
  const w = Buffer.alloc(20);
  [t.window.sndWl1, t.window.sndWnd, t.window.maxWindow, t.window.rcvWnd, t.window.rcvWup].forEach((v, i) => w.writeUInt32LE(v >>> 0, i * 4));
  setOpt(fd, SOL.TCP, TCP.REPAIR_WINDOW, w);
}

/** Lets the restored connection talk: leaves repair mode (a window probe goes out), then sends what had never been sent. */
export function activateTcp(fd: number, t: TcpRepair): void {
  setIntOpt(fd, SOL.TCP, TCP.REPAIR, REPAIR_OFF);
  const sendQueue = Buffer.from(t.sendQueue, 'base64');
  writeQueue(fd, sendQueue.subarray(sendQueue.length - t.unsent), SO.SNDBUFFORCE);
  if (t.fin === 'unsent') sys('shutdown', fd, 1);
}

/** The frozen original carries on after an abandoned checkpoint. */
export const leaveRepair = (fd: number): void => setIntOpt(fd, SOL.TCP, TCP.REPAIR, REPAIR_OFF);
