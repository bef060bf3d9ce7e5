// The leader lease through a NATS outage: a blip shorter than the lease keeps it; an outage past
// its expiry loses it (the coordinator stands by) and the same process takes it back afterwards,
// unless another coordinator took it meanwhile.
import type { KV } from '@nats-io/kv';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LeaderLease } from '../../coordinator/lease.ts';
import { FakeKv } from './fake-kv.ts';

const TTL = 600;

function lease(kv: FakeKv, holder: string) {
  const l = new LeaderLease(kv as unknown as KV, holder, TTL);
  const events: string[] = [];
  l.on('acquired', () => events.push('acquired'));
  l.on('lost', (r) => events.push(`lost: ${r}`));
  void l.run();
  return { l, events };
}

async function until(ok: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

describe('leader lease through a NATS outage', () => {
  it('keeps the lease through a blip shorter than its TTL', async () => {
    const kv = new FakeKv('ferry_leases');
    const { l, events } = lease(kv, 'a');
    await until(() => l.held, 'a holds the lease');
    kv.down = true;
    await sleep(TTL / 4);
    kv.down = false;
    await sleep(TTL);
    l.stop();
    expect(events).toEqual(['acquired']);
  });

  it('loses it when an outage outlasts it, and takes it back afterwards without a restart', async () => {
    const kv = new FakeKv('ferry_leases');
    const { l, events } = lease(kv, 'a');
    await until(() => l.held, 'a holds the lease');
    kv.down = true;
    await until(() => !l.held, 'a loses the lease');
    kv.down = false;
    await until(() => l.held, 'a takes it back');
    l.stop();
    expect(events).toEqual(['acquired', 'lost: the lease expired while KV was unreachable', 'acquired']);
  });

  it('after an outage that both coordinators saw, exactly one of them leads', async () => {
    const kv = new FakeKv('ferry_leases');
    const a = lease(kv, 'a');
    await until(() => a.l.held, 'a holds the lease');
    const b = lease(kv, 'b');
    kv.down = true;
    await until(() => !a.l.held, 'a loses the lease');
    const cutOff = a.l;
    kv.down = false;
    await until(() => b.l.held || cutOff.held, 'someone leads');
    await sleep(TTL * 2);
    expect([a.l.held, b.l.held].filter(Boolean)).toHaveLength(1);
    a.l.stop();
    b.l.stop();
  });
});
