// The direct agent-to-agent data stream of one migration: a TCP connection negotiated over NATS,
// mutually authenticated with the migration's secret, carrying frames (frames.ts) both ways.
// Back-pressure is end to end: a sender waits while the kernel's buffer is full, and a receiver
// stops reading the socket while its consumer lags, so neither side buffers more than a bound.
import net from 'node:net';
import { once } from 'node:events';
import diagnostics_channel from 'node:diagnostics_channel';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { newNonce, proof, verify } from './auth.ts';
import { FrameDecoder, encodeFrame, type Frame } from './frames.ts';

const chan = diagnostics_channel.channel('ferry:transfer');

export interface StreamEndpoint {
  host: string;
  port: number;
}

interface Auth {
  migrationId: string;
  secret: string;
}

/** Incoming frames buffered at most this many bytes before the socket is paused. */
const RECEIVE_HIGH_WATER = 32 * 1024 * 1024;

export class DataConnection {
  #decoder = new FrameDecoder();
  #queue: Frame[] = [];
  #queuedBytes = 0;
  #waiter: { resolve: (f: Frame | null) => void; reject: (e: Error) => void } | null = null;
  #ended = false;
  #error: Error | null = null;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
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
  async expect<H = Record<string, unknown>>(t: string): Promise<Frame<H>> {
    const f = await this.next();
    if (!f) throw new FerryError(ErrorCode.Unavailable, `data stream closed while waiting for "${t}"`);
    if (f.header.t === 'error') throw new FerryError(ErrorCode.Internal, `peer failed: ${String(f.header.message)}`);
    if (f.header.t !== t) throw new FerryError(ErrorCode.BadMessage, `data stream: expected "${t}", got "${f.header.t}"`);
    return f as Frame<H>;
  }

  /** Writes one frame; resolves once the kernel took it (waits for drain when its buffer is full). */
  async send(header: { t: string } & Record<string, unknown>, payload?: Buffer): Promise<void> {
    if (this.#error) throw this.#error;
    let flushed = true;
    for (const part of encodeFrame(header, payload)) {
      this.bytesSent += part.length;
      flushed = this.socket.write(part);
    }
    if (!flushed) await this.#drained();
    if (this.#error) throw this.#error;
  }

  /** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
  #drained(): Promise<void> {
    return new Promise((resolve) => {
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
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort: () => void): Promise<T> {
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

/** The receiving side: listens on this host's address for the one sender of a migration. */
export class DataListener {
  readonly #server: net.Server;
  readonly #accepted: Promise<DataConnection>;

  private constructor(
    server: net.Server,
    accepted: Promise<DataConnection>,
    readonly endpoint: StreamEndpoint,
  ) {
    this.#server = server;
    this.#accepted = accepted;
  }

  static async open(host: string, auth: Auth): Promise<DataListener> {
    const server = net.createServer();
    let resolveAccepted!: (c: DataConnection) => void;
    const accepted = new Promise<DataConnection>((r) => (resolveAccepted = r));
    let done = false;
    server.on('connection', (socket) => {
      if (done) return socket.destroy();
      const conn = new DataConnection(socket);
      void handshakeAsReceiver(conn, auth).then(
        () => {
          if (done) return conn.destroy();
          done = true;
          server.close();
          resolveAccepted(conn);
          if (chan.hasSubscribers) chan.publish({ kind: 'accepted', migrationId: auth.migrationId, peer: socket.remoteAddress });
        },
        () => conn.destroy(), // a stranger or a wrong secret: drop it and keep waiting for the real sender
      );
    });
    server.listen(0, host);
    await once(server, 'listening');
    const addr = server.address() as net.AddressInfo;
    return new DataListener(server, accepted, { host, port: addr.port });
  }

  accept(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<DataConnection> {
    const signals = [opts.signal, opts.timeoutMs ? AbortSignal.timeout(opts.timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
    return abortable(this.#accepted, signals.length ? AbortSignal.any(signals) : undefined, () => this.close());
  }

  close(): void {
    this.#server.close();
  }
}

async function handshakeAsReceiver(conn: DataConnection, auth: Auth): Promise<void> {
  const nonce = newNonce();
  await conn.send({ t: 'hello', migrationId: auth.migrationId, nonce });
  const a = await conn.expect<{ migrationId: string; mac: string; nonce: string }>('auth');
  if (a.header.migrationId !== auth.migrationId || !verify(proof(auth.secret, auth.migrationId, 'sender', nonce), a.header.mac)) {
    await conn.send({ t: 'error', message: 'authentication failed' }).catch(() => undefined);
    throw new FerryError(ErrorCode.InvalidRequest, 'data stream: sender failed authentication');
  }
  await conn.send({ t: 'welcome', mac: proof(auth.secret, auth.migrationId, 'receiver', String(a.header.nonce)) });
}

/** The sending side: connects to the receiver's endpoint and proves it holds the migration's secret. */
export async function connectStream(endpoint: StreamEndpoint, auth: Auth, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<DataConnection> {
  const socket = net.connect(endpoint.port, endpoint.host);
  const conn = new DataConnection(socket);
  const run = async () => {
    await Promise.race([
      once(socket, 'connect'),
      once(socket, 'error').then(([e]) => {
        throw new FerryError(ErrorCode.Unavailable, `cannot reach data stream at ${endpoint.host}:${endpoint.port}: ${(e as Error).message}`);
      }),
    ]);
    const hello = await conn.expect<{ migrationId: string; nonce: string }>('hello');
    if (hello.header.migrationId !== auth.migrationId) throw new FerryError(ErrorCode.InvalidRequest, 'data stream: receiver serves another migration');
    const nonce = newNonce();
    await conn.send({ t: 'auth', migrationId: auth.migrationId, nonce, mac: proof(auth.secret, auth.migrationId, 'sender', hello.header.nonce) });
    const w = await conn.expect<{ mac: string }>('welcome');
    if (!verify(proof(auth.secret, auth.migrationId, 'receiver', nonce), w.header.mac)) throw new FerryError(ErrorCode.InvalidRequest, 'data stream: receiver failed authentication');
    return conn;
  };
  const signals = [opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 10_000)].filter((s): s is AbortSignal => !!s);
  try {
    return await abortable(run(), AbortSignal.any(signals), () => conn.destroy());
  } catch (err) {
    conn.destroy();
    throw err;
  }
}
