// Simulated ferry agents for bench/fleet.ts: many hosts in one process, each speaking the real
// agent protocol on the real subjects. Each host heartbeats (shared/protocol.ts Heartbeat, its
// facts with every workload's load, its claims) every interval and at once when what it holds
// changes, and serves a NATS micro service with every agent endpoint, validated by shared/rpc.ts
// as agent/services.ts does; the answers come from bench/fleet-sim.ts. All hosts of the process
// share one NATS connection (the bench's server is unauthenticated, on loopback only).
// Usage: node --import tsx bench/fleet-agents.ts --server nats://127.0.0.1:PORT --first 1 --count 125
//        [--workloads 10] [--interval-ms 1000]
// Prints one JSON line {"ready":true,...} on stdout once every host serves and has heartbeated.
import { parseArgs } from 'node:util';
import { Svcm, type Service } from '@nats-io/services';
import { connect } from '@nats-io/transport-node';
import type { z } from 'zod';
import { agentApi, PROTOCOL_VERSION, type AgentApi, type EndpointSpec } from '../shared/protocol.ts';
import { answer, encode } from '../shared/rpc.ts';
import { serviceNames, subjects } from '../shared/subjects.ts';
import { SimHost, hostName } from './fleet-sim.ts';

const { values } = parseArgs({
  options: {
    server: { type: 'string' },
    first: { type: 'string', default: '1' },
    count: { type: 'string' },
    workloads: { type: 'string', default: '10' },
    'interval-ms': { type: 'string', default: '1000' },
  },
});
if (!values.server || !values.count) {
  process.stderr.write('usage: fleet-agents.ts --server URL --first N --count N [--workloads 10] [--interval-ms 1000]\n');
  process.exit(2);
}
const first = Number(values.first);
const count = Number(values.count);
const perHost = Number(values.workloads);
const intervalMs = Number(values['interval-ms']);

const nc = await connect({ servers: values.server, name: `ferry-bench-agents-${first}-${first + count - 1}`, maxReconnectAttempts: -1 });
const hosts: SimHost[] = [];
const services: Service[] = [];
const timers: NodeJS.Timeout[] = [];

/** One host's heartbeats: now, then every interval from a staggered start, and at once on a change of claims. */
function heartbeat(h: SimHost): () => void {
  let seq = 0;
  const subject = subjects.heartbeat(h.name);
  return () =>
    nc.publish(subject, encode({ protocol: PROTOCOL_VERSION, host: h.name, seq: ++seq, intervalMs, sentAt: new Date().toISOString(), facts: h.facts(), workloads: h.claims() }));
}

/** One endpoint's handler, typed by its request schema in shared/protocol.ts. */
type Handler<E extends keyof AgentApi> = (h: SimHost, req: z.infer<AgentApi[E]['request']>) => unknown;

async function serve(h: SimHost): Promise<Service> {
  const service = await new Svcm(nc).add({ name: serviceNames.agent, version: '0.1.0-sim', description: `simulated ferry agent on ${h.name}`, metadata: { host: h.name } });
  const group = service.addGroup(subjects.agentGroup(h.name), '');
  const endpoint = <E extends keyof AgentApi>(e: E, fn: Handler<E>) => {
    const [g, name] = e.startsWith('mig.') ? [mig, e.slice(4)] : [group, e];
    const spec = agentApi[e] as EndpointSpec<z.ZodType, z.ZodType>;
    g.addEndpoint(name, { handler: (_err, msg) => void answer(spec, msg, (req) => fn(h, req as z.infer<AgentApi[E]['request']>)) });
  };
  const mig = group.addGroup('mig');
  const started = Date.now();
  endpoint('ping', (x) => ({ host: x.name, pid: x.pid, uptimeMs: Date.now() - started }));
  endpoint('facts', (x) => x.facts());
  endpoint('workloads', (x) => x.list());
  endpoint('run', (x, r) => x.run(r));
  endpoint('stop', (x, r) => x.stop(r.name));
  endpoint('update', (x, r) => x.update(r.name, r.limits));
  endpoint('mig.preflight', (x, r) => x.preflight(r));
  endpoint('mig.admit', (x, r) => x.admit(r));
  endpoint('mig.receive', (x, r) => x.receive(r));
  endpoint('mig.precopy', (x, r) => x.precopy(r));
  endpoint('mig.freeze', (x, r) => x.freeze(r));
  endpoint('mig.send', (x, r) => x.send(r));
  endpoint('mig.restore', (x, r) => x.restore(r));
  endpoint('mig.resume', (x, r) => x.resume(r));
  endpoint('mig.cleanup', (x, r) => x.cleanup(r));
  endpoint('mig.thaw', (x, r) => x.thaw(r));
  endpoint('mig.discard', (x, r) => x.discard(r));
  return service;
}

for (let i = first; i < first + count; i++) {
  const h = new SimHost(i, hostName(i), 1_000_000 + i, perHost);
  hosts.push(h);
  services.push(await serve(h));
}
await nc.flush();
for (const h of hosts) {
  const beat = heartbeat(h);
  h.onClaimsChanged = beat;
  // Staggered over the interval, as independent agents are.
  const offset = Math.floor(((h.index - first) / count) * intervalMs);
  timers.push(
    setTimeout(() => {
      beat();
      timers.push(setInterval(beat, intervalMs));
    }, offset),
  );
}
await new Promise((r) => setTimeout(r, intervalMs));
process.stdout.write(`${JSON.stringify({ ready: true, first, count, pid: process.pid })}\n`);

const shutdown = async () => {
  for (const t of timers) clearTimeout(t);
  await Promise.allSettled(services.map((s) => s.stop()));
  await nc.drain().catch(() => undefined);
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
