// ferry_nats_connected: whether a daemon's NATS connection is up, from the connection's own
// status events (both daemons reconnect by themselves; this shows the gaps).
import { Gauge, type Registry } from 'prom-client';

/** What the gauge follows: a NATS connection's status stream (NatsConnection fits). */
export interface StatusSource {
  status(): AsyncIterable<{ type: string }>;
  isClosed(): boolean;
}

export function natsConnectedGauge(registry: Registry, nc: StatusSource): Gauge {
  let connected = !nc.isClosed();
  const gauge = new Gauge({
    name: 'ferry_nats_connected',
    help: '1 while this daemon is connected to a NATS server, 0 while it reconnects',
    registers: [registry],
    collect() {
      this.set(connected && !nc.isClosed() ? 1 : 0);
    },
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'close') connected = false;
      else if (s.type === 'reconnect') connected = true;
    }
  })().catch(() => undefined);
  return gauge;
}
