// The direct agent-to-agent data stream of one migration: a connection to the destination's
// stream listener (stream-server.ts), mutually authenticated with the two agents' certificates
// (TLS 1.3, auth.ts, identity.ts), carrying frames (frames.ts) both ways. Encrypted unless both
// agents are configured for a trusted fabric: then the frames go over a second, clear TCP
// connection bound to the authenticated one (docs/security.md "Data stream").
// Back-pressure is end to end: a sender waits while the kernel's buffer is full, and a receiver
// stops reading the socket while its consumer lags, so neither side buffers more than a bound.
import diagnostics_channel from 'node:diagnostics_channel';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { TLS_OPTIONS, bindingToken, type StreamCredentials } from './auth.ts';
import type { FrameKind, StreamFrameHeader } from '../../shared/stream-frames.ts';
import { BufferPool } from './buffer-pool.ts';
import { FrameDecoder, encodeFrame, isFrame, type Frame } from './frames.ts';
import { agentIdentity, assertAgentIdentity } from './identity.ts';

export interface StreamEndpoint {
  host: string;
  port: number;
}

/** What the sending agent needs to open a migration's stream. */
export interface StreamAuth {
  migrationId: string;
  /** The destination's host name: its certificate must be agent.<peer>. */
  peer: string;
  credentials: StreamCredentials;
  /** This agent's setting; the stream goes in clear only if the destination's says so too. */
  encrypt: boolean;
  /** Paces what this side sends to this many bytes per second (absent: no cap). */
  rateBps?: number;
  /** 'faults': post-copy's second connection of the migration (demand pages), beside its stream. */
  channel?: 'faults';
}

/** What a clear data connection starts with: never the first byte of TLS (0x16), and says what follows. */
export const CLEAR_PREAMBLE = Buffer.from('ferry-clear-stream/1\n');

/** Bytes as they go out and come in ({ kind: 'sent' | 'received', bytes }), for agent/metrics.ts. */
const chan = diagnostics_channel.channel('ferry:transfer');

/** Incoming frames buffered at most this many bytes before the socket is paused. */
const RECEIVE_HIGH_WATER = 32 * 1024 * 1024;
/** Large payloads are assembled in buffers used again (buffer-pool.ts): a page frame's size at least, a queue's worth kept. */
const POOL_MIN = (1 << 20) + 64 * 1024;
const POOL_KEEP = RECEIVE_HIGH_WATER + 16 * 1024 * 1024;

export class DataConnection {
  #decoder = new FrameDecoder(new BufferPool(POOL_MIN, POOL_KEEP));
  #queue: Frame[] = [];
  #queuedBytes = 0;
  #waiter: { resolve: (f: Frame | null) => void; reject: (e: Error) => void } | null = null;
  #ended = false;
  #error: Error | null = null;
  bytesSent = 0;
  bytesReceived = 0;
  /** In clear mode: the authenticated TLS connection this one is bound to; each dies with the other. */
  #control: net.Socket | null = null;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      if (chan.hasSubscribers) chan.publish({ kind: 'received', bytes: chunk.length });
      let frames: Frame[];
      try {
        frames = this.#decoder.push(chunk);
      } catch (err) {
        this.#fail(err as Error);
        socket.destroy();
        return;
      }
      for (const f of frames) this.#deliver(f);
      if (this.#queuedBytes > RECEIVE_HIGH_WATER) socket.pause();
    });
    socket.on('end', () => this.#finish());
    socket.on('close', () => this.#finish());
    socket.on('error', (err) => this.#fail(new FerryError(ErrorCode.Unavailable, `data stream: ${err.message}`, { cause: err })));
  }

  /** Frames received and not yet taken with next(): a next() now would not wait. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Whether the frames travel encrypted (TLS) or in clear (bound to a TLS connection). */
  get encrypted(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  /** Ties this clear connection's life to the TLS connection that authenticated it. */
  bindControl(control: net.Socket): void {
    this.#control = control;
    control.on('error', () => undefined);
    control.once('close', () => this.socket.destroy());
    this.socket.once('close', () => control.destroy());
  }

  #deliver(f: Frame): void {
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      w.resolve(f);
      return;
    }
    this.#queue.push(f);
    this.#queuedBytes += f.payload.length;
  }

  #finish(): void {
    this.#ended = true;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      if (this.#error) w.reject(this.#error);
      else w.resolve(null);
    }
  }

  #fail(err: Error): void {
    this.#error ??= err;
    this.#finish();
  }

  /** The next frame, or null once the peer closed the stream cleanly. */
  next(): Promise<Frame | null> {
    const f = this.#queue.shift();
    if (f) {
      this.#queuedBytes -= f.payload.length;
      if (this.#queuedBytes <= RECEIVE_HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
      return Promise.resolve(f);
    }
    if (this.#error) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  /** Puts a frame taken with next() back in front of the queue (a receiver that looked before deciding who reads on). */
  unshift(f: Frame): void {
    this.#queue.unshift(f);
    this.#queuedBytes += f.payload.length;
  }

  /** The next frame, which must be of type `t` (an `error` frame from the peer is thrown). */
  async expect<K extends FrameKind>(t: K): Promise<Frame<K>> {
    const f = await this.next();
    if (!f) throw new FerryError(ErrorCode.Unavailable, `data stream closed while waiting for "${t}"`);
    if (f.header.t === 'error') throw new FerryError(ErrorCode.Internal, `peer failed: ${f.header.message}`);
    if (!isFrame(f, t)) throw new FerryError(ErrorCode.BadMessage, `data stream: expected "${t}", got "${f.header.t}"`);
    return f;
  }

  /** Caps what send() writes to `bytesPerSecond` from now on (a migration's bandwidth share). */
  pace(bytesPerSecond: number): void {
    this.#pacer = new Pacer(bytesPerSecond);
  }

  #pacer: Pacer | null = null;

  /** Writes one frame; resolves once the kernel took it (waits for drain when its buffer is full). */
  async send(header: StreamFrameHeader, payload?: Buffer): Promise<void> {
    if (this.#error) throw this.#error;
    // A socket closed under us never drains: the frame would wait forever.
    if (this.socket.destroyed) throw new FerryError(ErrorCode.Unavailable, `data stream closed before "${header.t}" could go`);
    if (this.#pacer) await this.#pacer.take(payload?.length ?? 0);
    let flushed = true;
    // One write per frame part, corked so that TLS makes records of the whole frame, not of its 8-byte prefix.
    this.socket.cork();
    let bytes = 0;
    for (const part of encodeFrame(header, payload)) {
      bytes += part.length;
      flushed = this.socket.write(part);
    }
    this.socket.uncork();
    this.bytesSent += bytes;
    if (chan.hasSubscribers) chan.publish({ kind: 'sent', bytes });
    if (!flushed) await this.#drained();
    if (this.#error) throw this.#error;
  }

  /** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
  #drained(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  async end(): Promise<void> {
    if (this.socket.destroyed) return;
    this.socket.end();
    await once(this.socket, 'close').catch(() => undefined);
    this.#control?.destroy();
  }

  destroy(): void {
    this.socket.destroy();
    this.#control?.destroy();
  }
}

export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort: () => void): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    onAbort();
    return Promise.reject(new FerryError(ErrorCode.Cancelled, 'data stream cancelled'));
  }
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      onAbort();
      reject(new FerryError(ErrorCode.Cancelled, 'data stream cancelled'));
    };
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

/** The next frame of a handshake: a refusal by the peer says so. */
async function handshakeFrame<K extends FrameKind>(conn: DataConnection, t: K, peer: string): Promise<Frame<K>> {
  const f = await conn.next();
  if (!f) throw new FerryError(ErrorCode.Unavailable, `data stream: ${peer} closed the connection during the handshake`);
  if (f.header.t === 'error') throw new FerryError(ErrorCode.InvalidRequest, `data stream refused by ${peer}: ${f.header.message}`);
  if (!isFrame(f, t)) throw new FerryError(ErrorCode.BadMessage, `data stream: expected "${t}" from ${peer}, got "${f.header.t}"`);
  return f;
}

function connected(socket: net.Socket, event: 'connect' | 'secureConnect', endpoint: StreamEndpoint): Promise<void> {
  return Promise.race([
    once(socket, event).then(() => undefined),
    once(socket, 'error').then(([e]) => {
      throw new FerryError(ErrorCode.Unavailable, `cannot reach data stream at ${endpoint.host}:${endpoint.port}: ${(e as Error).message}`);
    }),
  ]);
}

/**
 * The sending side: opens the migration's stream at the destination's listener. TLS checks the
 * destination's certificate against the CA, then this that it is agent.<peer>; the destination
 * checks ours the same way. In clear mode a second, plain TCP connection carries the frames.
 */
export async function connectStream(endpoint: StreamEndpoint, auth: StreamAuth, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<DataConnection> {
  const peerName = agentIdentity(auth.peer);
  const socket = tls.connect({
    host: endpoint.host,
    port: endpoint.port,
    secureContext: auth.credentials.context,
    servername: peerName,
    ...TLS_OPTIONS,
    // The name check is ours (identity.ts): exactly agent.<peer>, whatever address we dialled.
    checkServerIdentity: () => undefined,
  });
  const control = new DataConnection(socket);
  let data: DataConnection | null = null;
  const run = async () => {
    await connected(socket, 'secureConnect', endpoint);
    assertAgentIdentity(socket.getPeerX509Certificate(), auth.peer, 'destination');
    await control.send({ t: 'open', migrationId: auth.migrationId, clear: !auth.encrypt, ...(auth.channel ? { channel: auth.channel } : {}) });
    const w = await handshakeFrame(control, 'welcome', peerName);
    if (w.header.migrationId !== auth.migrationId) throw new FerryError(ErrorCode.InvalidRequest, `data stream: ${peerName} welcomed another migration`);
    if (!w.header.clear) return control;
    if (auth.encrypt) throw new FerryError(ErrorCode.InvalidRequest, `data stream: ${peerName} offered a clear stream this agent did not ask for`);
    const token = bindingToken(socket, auth.migrationId);
    const plain = net.connect(endpoint.port, endpoint.host);
    data = new DataConnection(plain);
    data.bindControl(socket);
    await connected(plain, 'connect', endpoint);
    plain.write(CLEAR_PREAMBLE);
    await data.send({ t: 'bind', migrationId: auth.migrationId, token: token.toString('hex'), ...(auth.channel ? { channel: auth.channel } : {}) });
    await handshakeFrame(data, 'bound', peerName);
    return data;
  };
  const signals = [opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 10_000)].filter((s): s is AbortSignal => !!s);
  const destroy = () => {
    control.destroy();
    (data as DataConnection | null)?.destroy();
  };
  try {
    const conn = await abortable(run(), AbortSignal.any(signals), destroy);
    if (auth.rateBps) conn.pace(auth.rateBps);
    return conn;
  } catch (err) {
    destroy();
    throw err;
  }
}

/**
 * A token bucket over bytes: take(n) waits until n bytes fit in the rate. The bucket holds a tenth
 * of a second's worth, so the stream keeps its rate without bursts of more than that.
 */
export class Pacer {
  #tokens: number;
  #at = performance.now();
  readonly #burst: number;

  constructor(private readonly bytesPerSecond: number) {
    this.#burst = Math.max(64 * 1024, bytesPerSecond / 10);
    this.#tokens = this.#burst;
  }

  async take(bytes: number): Promise<void> {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) * this.bytesPerSecond) / 1000);
    this.#at = now;
    this.#tokens -= bytes;
    if (this.#tokens < 0) await new Promise((r) => setTimeout(r, (-this.#tokens * 1000) / this.bytesPerSecond));
  }
}
