// One way to connect to the NATS cluster for every ferry process.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, FerryError } from './errors.ts';
import type { Logger } from './log.ts';

export interface ConnectOptions {
  servers: string[];
  name: string;
  /** Daemons wait for the server and reconnect forever, with backoff; the CLI fails fast. */
  persistent: boolean;
}

/** Delay before reconnect attempt `n` (0-based) of one outage: 250 ms doubling up to 2 s, with jitter. */
export function reconnectDelayMs(n: number, random: () => number = Math.random): number {
  const base = Math.min(2_000, 250 * 2 ** Math.min(n, 3));
  return Math.round(base * (0.75 + random() * 0.5));
}

export async function connectNats(o: ConnectOptions): Promise<NatsConnection> {
  // Attempts of the current outage; the status loop resets it once the connection is back.
  const attempts = { n: 0 };
  try {
    const nc = await connect({
      servers: o.servers,
      name: o.name,
      waitOnFirstConnect: o.persistent,
      maxReconnectAttempts: o.persistent ? -1 : 0,
      reconnectTimeWait: 250,
      reconnectDelayHandler: () => reconnectDelayMs(attempts.n++),
      timeout: o.persistent ? 20_000 : 3_000,
    });
    if (o.persistent) {
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'reconnect') attempts.n = 0;
      })().catch(() => undefined);
    }
    return nc;
  } catch (err) {
    throw new FerryError(ErrorCode.Unavailable, `cannot reach NATS at ${o.servers.join(', ')}: ${(err as Error).message}`, { cause: err });
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
