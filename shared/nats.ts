// One way to connect to the NATS cluster for every ferry process.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, FerryError } from './errors.ts';

export interface ConnectOptions {
  servers: string[];
  name: string;
  /** Daemons wait for the server and reconnect forever; the CLI fails fast. */
  persistent: boolean;
}

export async function connectNats(o: ConnectOptions): Promise<NatsConnection> {
  try {
    return await connect({
      servers: o.servers,
      name: o.name,
      waitOnFirstConnect: o.persistent,
      maxReconnectAttempts: o.persistent ? -1 : 0,
      reconnectTimeWait: 250,
      timeout: o.persistent ? 20_000 : 3_000,
    });
  } catch (err) {
    throw new FerryError(ErrorCode.Unavailable, `cannot reach NATS at ${o.servers.join(', ')}: ${(err as Error).message}`, { cause: err });
  }
}
