// The destination's data stream listener: one per agent, on its own address and a fixed port
// (AgentConfig.stream.port), shared by every migration it receives. A migration's step registers
// which agent may send it (expect()); a connection names its migration in its first frame and is
// taken only if its certificate is that agent's, once per migration: a second connection claiming
// the same migration is refused, as is one for a migration nobody expects here (fenced, ended,
// or made up). Connections that start with a TLS record are the authenticated ones; any other is
// a clear data connection, which must present the token of an authenticated one (auth.ts).
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import diagnostics_channel from 'node:diagnostics_channel';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { errorMessage } from '../../shared/stream-frames.ts';
import { TLS_OPTIONS, bindingToken, sameToken, type StreamCredentials } from './auth.ts';
import { assertAgentIdentity } from './identity.ts';
import { CLEAR_PREAMBLE, DataConnection, abortable, type StreamEndpoint } from './stream.ts';

const chan = diagnostics_channel.channel('ferry:transfer');

/** A TLS connection's first byte: the handshake record type. */
const TLS_HANDSHAKE = 0x16;
/** Bytes a connection may send before it is authenticated and bound to a migration (its first frame is small). */
const PRE_AUTH_BYTES = 16 * 1024;
/** Migrations remembered as claimed (a second claim is refused); the oldest are forgotten past this. */
const CLAIMED_KEPT = 10_000;

export interface StreamServerOptions {
  address: string;
  port: number;
  credentials: StreamCredentials;
  /** False: this agent accepts clear streams from senders that ask for one (both must say so). */
  encrypt: boolean;
  /** A connection must authenticate and name its migration within this time. */
  handshakeTimeoutMs?: number;
}

interface Pending {
  source: string;
  resolve: (c: DataConnection) => void;
  reject: (e: Error) => void;
}

interface Binding {
  token: Buffer;
  remoteAddress: string | undefined;
  control: tls.TLSSocket;
  /** Ends the control connection's handshake timer once the clear connection is bound. */
  controlDone: () => void;
  pending: Pending;
}

/** One migration's expected stream at this listener. */
export class ExpectedStream {
  constructor(
    readonly endpoint: StreamEndpoint,
    private readonly accepted: Promise<DataConnection>,
    private readonly cancel: () => void,
  ) {}

  /** The authenticated connection of the migration's source. */
  accept(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<DataConnection> {
    const signals = [opts.signal, opts.timeoutMs ? AbortSignal.timeout(opts.timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
    return abortable(this.accepted, signals.length ? AbortSignal.any(signals) : undefined, this.cancel);
  }

  /** No connection is taken for it any more. */
  close(): void {
    this.cancel();
  }
}

export class StreamServer {
  readonly #pending = new Map<string, Pending>();
  readonly #bindings = new Map<string, Binding>();
  readonly #claimed = new Set<string>();
  readonly #handshakeMs: number;
  /** Never listens itself: takes the connections that start with a TLS record from the TCP listener. */
  readonly #tls: tls.Server;

  private constructor(
    private readonly server: net.Server,
    readonly endpoint: StreamEndpoint,
    private readonly o: StreamServerOptions,
  ) {
    this.#handshakeMs = o.handshakeTimeoutMs ?? 10_000;
    const c = o.credentials;
    // A tls.Server (not a bare TLSSocket) so that a client certificate that does not chain to the
    // CA, or none, fails the handshake: node enforces rejectUnauthorized only for a server's sockets.
    this.#tls = tls.createServer({ ca: c.ca, cert: c.cert, key: c.key, ...TLS_OPTIONS, requestCert: true, rejectUnauthorized: true, handshakeTimeout: this.#handshakeMs });
    this.#tls.on('secureConnection', (socket: tls.TLSSocket) => this.#secure(socket));
    this.#tls.on('tlsClientError', (_err, socket) => socket.destroy());
    server.on('connection', (socket) => this.#connection(socket));
  }

  static async open(o: StreamServerOptions): Promise<StreamServer> {
    const server = net.createServer();
    server.listen({ port: o.port, host: o.address, exclusive: true });
    try {
      await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e as Error))]);
    } catch (err) {
      server.close();
      throw new FerryError(ErrorCode.BadConfig, `data stream: cannot listen on ${o.address}:${o.port} (stream.port in the agent config): ${(err as Error).message}`, { cause: err });
    }
    // Port 0 (tests only: the config requires a real port) takes whatever the kernel gives.
    return new StreamServer(server, { host: o.address, port: (server.address() as net.AddressInfo).port }, o);
  }

  /**
   * Registers a migration whose stream comes from agent.<source>; at most once per migration
   * (and once more for its post-copy `faults` channel).
   */
  expect(id: string, source: string, channel?: 'faults'): ExpectedStream {
    const migrationId = streamKey(id, channel);
    if (this.#claimed.has(migrationId)) throw new FerryError(ErrorCode.Conflict, `data stream of ${migrationId}: its source connected already`);
    this.#pending.get(migrationId)?.reject(new FerryError(ErrorCode.Cancelled, `data stream of ${migrationId}: expected again`));
    let pending!: Pending;
    const accepted = new Promise<DataConnection>((resolve, reject) => (pending = { source, resolve, reject }));
    accepted.catch(() => undefined);
    this.#pending.set(migrationId, pending);
    const cancel = () => {
      if (this.#pending.get(migrationId) === pending) this.#pending.delete(migrationId);
      const b = this.#bindings.get(migrationId);
      if (b?.pending === pending) {
        this.#bindings.delete(migrationId);
        b.control.destroy();
      }
      pending.reject(new FerryError(ErrorCode.Cancelled, 'data stream cancelled'));
    };
    return new ExpectedStream(this.endpoint, accepted, cancel);
  }

  /** Whether the migration's source has connected (its one chance is used). */
  claimed(migrationId: string, channel?: 'faults'): boolean {
    return this.#claimed.has(streamKey(migrationId, channel));
  }

  close(): void {
    this.server.close();
    for (const p of this.#pending.values()) p.reject(new FerryError(ErrorCode.Cancelled, 'data stream listener closed'));
    this.#pending.clear();
  }

  #connection(socket: net.Socket): void {
    socket.on('error', () => undefined);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first[0] === TLS_HANDSHAKE) this.#tls.emit('connection', socket);
      else if (first[0] !== CLEAR_PREAMBLE[0]) socket.destroy();
      else {
        const timer = setTimeout(() => socket.destroy(), this.#handshakeMs);
        socket.once('close', () => clearTimeout(timer));
        void this.#clear(socket, () => clearTimeout(timer)).catch(() => socket.destroy());
      }
    });
  }

  /** A TLS connection: the client's certificate chains to the CA (checked by TLS) and must be the expected source's. */
  #secure(socket: tls.TLSSocket): void {
    socket.on('error', () => socket.destroy());
    if (!socket.authorized) return void socket.destroy();
    const timer = setTimeout(() => socket.destroy(), this.#handshakeMs);
    socket.once('close', () => clearTimeout(timer));
    const conn = new DataConnection(socket);
    const unguard = guardPreAuth(socket, conn);
    const done = () => {
      clearTimeout(timer);
      unguard();
    };
    void this.#open(conn, socket, done).catch(async (err: unknown) => {
      await conn.send({ t: 'error', message: errorMessage(FerryError.from(err).message) }).catch(() => undefined);
      conn.destroy();
    });
  }

  async #open(conn: DataConnection, socket: tls.TLSSocket, done: () => void): Promise<void> {
    const f = await conn.expect('open');
    const id = streamKey(f.header.migrationId, f.header.channel);
    const pending = this.#pending.get(id);
    if (!pending) {
      throw new FerryError(ErrorCode.InvalidRequest, this.#claimed.has(id) ? `the stream of ${id} is connected already` : `no stream of ${id} is expected here`);
    }
    // Before the claim: a wrong agent must not use up the real source's one chance.
    assertAgentIdentity(socket.getPeerX509Certificate(), pending.source, 'source');
    this.#pending.delete(id);
    this.#claim(id);
    const clear = !this.o.encrypt && f.header.clear === true;
    if (clear) {
      this.#bindings.set(id, { token: bindingToken(socket, f.header.migrationId), remoteAddress: socket.remoteAddress, control: socket, controlDone: done, pending });
      socket.once('close', () => {
        if (this.#bindings.get(id)?.control !== socket) return;
        this.#bindings.delete(id);
        pending.reject(new FerryError(ErrorCode.Unavailable, `data stream of ${id}: the source left before binding its clear connection`));
      });
    }
    await conn.send({ t: 'welcome', migrationId: f.header.migrationId, clear });
    if (clear) return; // the clear connection must follow within the handshake time (#clear)
    done();
    pending.resolve(conn);
    if (chan.hasSubscribers) chan.publish({ kind: 'accepted', migrationId: id, peer: socket.remoteAddress, encrypted: true });
  }

  /** A clear connection: only with the token of an authenticated TLS connection, from the same address. */
  async #clear(socket: net.Socket, done: () => void): Promise<void> {
    if (!(await readBytes(socket, CLEAR_PREAMBLE.length)).equals(CLEAR_PREAMBLE)) return void socket.destroy();
    const conn = new DataConnection(socket);
    const unguard = guardPreAuth(socket, conn);
    socket.resume();
    const f = await conn.expect('bind');
    const id = streamKey(f.header.migrationId, f.header.channel);
    const b = this.#bindings.get(id);
    if (!b || b.remoteAddress !== socket.remoteAddress || !sameToken(b.token, f.header.token)) {
      conn.destroy();
      return;
    }
    this.#bindings.delete(id);
    conn.bindControl(b.control);
    await conn.send({ t: 'bound' });
    unguard();
    done();
    b.controlDone();
    b.pending.resolve(conn);
    if (chan.hasSubscribers) chan.publish({ kind: 'accepted', migrationId: id, peer: socket.remoteAddress, encrypted: false });
  }

  #claim(id: string): void {
    this.#claimed.add(id);
    if (this.#claimed.size > CLAIMED_KEPT) this.#claimed.delete(this.#claimed.values().next().value!);
  }
}

/** A migration's stream, or its faults channel, at this listener. */
const streamKey = (migrationId: string, channel: 'faults' | undefined): string => (channel ? `${migrationId}#${channel}` : migrationId);

/** Exactly n bytes from a paused socket (an empty buffer if it ends first). */
function readBytes(socket: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const done = (b: Buffer) => {
      socket.off('readable', tryRead);
      socket.off('close', closed);
      resolve(b);
    };
    const tryRead = () => {
      const b = socket.read(n) as Buffer | null;
      if (b) done(b);
    };
    const closed = () => done(Buffer.alloc(0));
    socket.on('readable', tryRead);
    socket.once('close', closed);
    tryRead();
  });
}

/** Drops a connection that sends more than a handshake's worth before it is taken; returns the release. */
function guardPreAuth(socket: net.Socket, conn: DataConnection): () => void {
  const check = () => {
    if (conn.bytesReceived > PRE_AUTH_BYTES) socket.destroy();
  };
  socket.on('data', check);
  return () => socket.off('data', check);
}
