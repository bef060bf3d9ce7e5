// One way to connect to the NATS cluster for every ferry process: TLS with the identity's own
// certificate, authenticated by its nkey, replies on an inbox of its own (shared/permissions.ts).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, nkeyAuthenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { NatsAccess } from './config.ts';
import { ErrorCode, FerryError } from './errors.ts';
import type { Logger } from './log.ts';
import { isNatsServer } from './nats-identity.ts';
import { inboxPrefix } from './permissions.ts';

export interface ConnectOptions {
  servers: string[];
  name: string;
  /** Daemons wait for the server and reconnect forever, with backoff; the CLI fails fast. */
  persistent: boolean;
  /** Certificate and nkey of this identity; without them the connection is anonymous (servers refuse it). */
  tls?: NatsAccess['tls'];
  credentials?: string;
}

/** The identity a certificate was issued to (its CN). */
export function certificateIdentity(certPath: string): string {
  const subject = new X509Certificate(readFileSync(certPath)).subject;
  const cn = /^CN=(.+)$/m.exec(subject)?.[1];
  if (!cn) throw new FerryError(ErrorCode.BadConfig, `certificate ${certPath} names no identity (CN)`);
  return cn;
}

export { isNatsServer, NATS_SERVER_IDENTITY } from './nats-identity.ts';

function readFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new FerryError(ErrorCode.BadConfig, `cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** The security part of the connection options: TLS files, nkey, inbox prefix. Also used by worker threads. */
export function securityOptions(o: Pick<ConnectOptions, 'tls' | 'credentials'>): Partial<NodeConnectionOptions> {
  const out: Partial<NodeConnectionOptions> = {};
  if (o.tls) {
    readFile(o.tls.key, 'TLS key');
    out.tls = { caFile: o.tls.ca, certFile: o.tls.cert, keyFile: o.tls.key, checkServerIdentity: isNatsServer } as NodeConnectionOptions['tls'];
    out.inboxPrefix = inboxPrefix(certificateIdentity(o.tls.cert));
  }
  if (o.credentials) out.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFile(o.credentials, 'nkey seed file').trim()));
  return out;
}

/** Delay before reconnect attempt `n` (0-based) of one outage: 250 ms doubling up to 2 s, with jitter. */
export function reconnectDelayMs(n: number, random: () => number = Math.random): number {
  const base = Math.min(2_000, 250 * 2 ** Math.min(n, 3));
  return Math.round(base * (0.75 + random() * 0.5));
}

/** Reconnect attempts of a short-lived client (the CLI): 250 ms doubling to 2 s each. */
export const CLIENT_RECONNECT_ATTEMPTS = 10;

export async function connectNats(o: ConnectOptions): Promise<NatsConnection> {
  const security = securityOptions(o);
  // Attempts of the current outage; the status loop resets it once the connection is back.
  const attempts = { n: 0 };
  try {
    const nc = await connect({
      servers: o.servers,
      name: o.name,
      waitOnFirstConnect: o.persistent,
      // A daemon reconnects for ever; a command (following a migration or a drain) rides out a
      // NATS node's loss by moving to another server, and gives up after about 15 s.
      maxReconnectAttempts: o.persistent ? -1 : CLIENT_RECONNECT_ATTEMPTS,
      reconnectTimeWait: 250,
      reconnectDelayHandler: () => reconnectDelayMs(attempts.n++),
      timeout: o.persistent ? 20_000 : 3_000,
      ...security,
    });
    if (o.persistent) {
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'reconnect') attempts.n = 0;
      })().catch(() => undefined);
    }
    return nc;
  } catch (err) {
    const e = err as Error;
    if (/authoriz|authentic/i.test(e.message)) throw new FerryError(ErrorCode.Unavailable, `NATS at ${o.servers.join(', ')} refused this identity: ${e.message}`, { cause: err });
    throw new FerryError(ErrorCode.Unavailable, `cannot reach NATS at ${o.servers.join(', ')}: ${e.message}`, { cause: err });
  }
}

/** Logs a daemon's connection losing and finding its server again (the client reconnects by itself). */
export async function logConnectionStatus(nc: NatsConnection, log: Logger): Promise<void> {
  try {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') log.warn({ server: s.server }, 'NATS connection lost; reconnecting');
      else if (s.type === 'reconnect') log.info({ server: s.server }, 'NATS connection back');
    }
  } catch {
    // the connection closed
  }
}
