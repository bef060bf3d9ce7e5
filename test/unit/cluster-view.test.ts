// The coordinator's cluster view: a host is alive only while its heartbeats arrive, and only once
// the agent process sending them has answered a request (its endpoints reachable), so a migration
// or listing is never sent to an agent that has just replaced another and cannot answer yet.
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ClusterView } from '../../coordinator/cluster.ts';
import { createLogger } from '../../shared/log.ts';
import type { Heartbeat } from '../../shared/protocol.ts';
import { encode } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import { FakeKv } from './fake-kv.ts';

const heartbeat = (pid: number, seq: number): Heartbeat => ({
  protocol: 1,
  host: 'h1',
  seq,
  intervalMs: 1000,
  sentAt: '2026-01-01T00:00:00.000Z',
  facts: {
    name: 'h1',
    hostname: 'vm',
    address: '10.78.0.11',
    kernel: { release: '6.18.44', version: '#1 SMP', arch: 'x86_64' },
    cpu: { model: 'AMD EPYC', count: 2, xsave: null },
    memory: { totalBytes: 25e9, availableBytes: 24e9 },
    features: { uffdWpAsync: true, pagemapScan: true, softDirty: false, clone3SetTid: true, sealedSystemMappings: false, timeNamespaces: true, cgroup2Freezer: true, ptrace: true },
    agent: { version: '0.1.0', pid, startedAt: '2026-01-01T00:00:00.000Z' },
    dataStream: null,
  },
});

/** A view fed by hand: heartbeats are delivered through the subscription it makes, the clock is the test's. */
async function view(probe: (host: string) => Promise<number>) {
  let deliver: ((msg: { subject: string; data: Uint8Array }) => void) | null = null;
  const nc = {
    subscribe: (_s: string, o: { callback: (err: null, m: unknown) => void }) => {
      deliver = (m) => o.callback(null, m);
      return { unsubscribe: () => undefined };
    },
  } as unknown as NatsConnection;
  let t = 0;
  const kv = new FakeKv('ferry_hosts') as unknown as KV & { watch: () => Promise<AsyncIterable<never>> };
  // No records to deliver: the watch waits until the view stops.
  (kv as { watch: unknown }).watch = async () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }) });
  const v = new ClusterView(nc, 3_000, createLogger('test', {}), () => t, 1, (h) => probe(h));
  await v.start(kv);
  const events: string[] = [];
  v.on('hostAlive', (h) => events.push(`alive ${h}`));
  v.on('hostLost', (h) => events.push(`lost ${h}`));
  return {
    v,
    events,
    beat: (pid: number, seq: number) => deliver!({ subject: subjects.heartbeat('h1'), data: encode(heartbeat(pid, seq)) }),
    advance: (ms: number) => (t += ms),
  };
}

const until = async (ok: () => boolean): Promise<void> => {
  while (!ok()) await sleep(5);
};

describe('cluster view liveness', () => {
  it('a host whose agent heartbeats but cannot answer yet is not alive; it is once the agent answers', async () => {
    let reachable = false;
    let asked = 0;
    const c = await view(async () => {
      asked++;
      if (!reachable) throw new Error('503 no responders');
      return 100;
    });
    c.beat(100, 1);
    await until(() => asked >= 2);
    expect(c.v.isAlive('h1')).toBe(false);
    expect(c.v.hosts()[0]).toMatchObject({ name: 'h1', alive: false });
    reachable = true;
    await until(() => c.v.isAlive('h1'));
    expect(c.events).toEqual(['alive h1']);
    c.v.stop();
  });

  it('a restarted agent (new pid) makes the host lost at once, and alive again only when the new process answers', async () => {
    let answering = 100;
    const c = await view(async () => answering);
    c.beat(100, 1);
    await until(() => c.v.isAlive('h1'));
    // A new process heartbeats before its predecessor was missed: the old answers no longer count.
    answering = 0;
    c.beat(200, 1);
    expect(c.v.isAlive('h1')).toBe(false);
    expect(c.events).toEqual(['alive h1', 'lost h1']);
    answering = 200;
    await until(() => c.v.isAlive('h1'));
    expect(c.events).toEqual(['alive h1', 'lost h1', 'alive h1']);
    c.v.stop();
  });

  it('an answer from another process (an older pid) does not make the new one alive', async () => {
    const c = await view(async () => 100);
    c.beat(200, 1);
    await sleep(100);
    expect(c.v.isAlive('h1')).toBe(false);
    c.v.stop();
  });

  it('a silent host is lost after the threshold; back from silence, it answers again before it is alive', async () => {
    let asked = 0;
    let answer = true;
    const c = await view(async () => {
      asked++;
      if (!answer) throw new Error('timeout');
      return 100;
    });
    c.beat(100, 1);
    await until(() => c.v.isAlive('h1'));
    c.advance(3_500);
    await until(() => !c.v.isAlive('h1'));
    answer = false;
    const before = asked;
    c.beat(100, 2);
    await until(() => asked > before + 1);
    expect(c.v.isAlive('h1')).toBe(false);
    answer = true;
    await until(() => c.v.isAlive('h1'));
    expect(c.events).toEqual(['alive h1', 'lost h1', 'alive h1']);
    c.v.stop();
  });

  it('a host never alive in this view is lost once it has been silent past the threshold, once (a new leader must not wait for it)', async () => {
    let answer = false;
    const c = await view(async () => {
      if (!answer) throw new Error('timeout');
      return 100;
    });
    c.beat(100, 1);
    expect(c.v.isLost('h1')).toBe(false);
    c.advance(3_500);
    await until(() => c.v.isLost('h1'));
    await sleep(800); // another sweep: no second event
    expect(c.events).toEqual(['lost h1']);
    answer = true;
    c.beat(100, 2);
    await until(() => c.v.isAlive('h1'));
    expect(c.v.isLost('h1')).toBe(false);
    expect(c.events).toEqual(['lost h1', 'alive h1']);
    c.v.stop();
  });
});
