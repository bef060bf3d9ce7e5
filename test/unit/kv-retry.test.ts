// A KV write that fails for a moment (a NATS node lost, its streams electing new leaders) is asked
// for again until the phase gives up; a decision is still recorded exactly once.
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { untilKvAnswers, MigrationStore } from '../../coordinator/store.ts';
import { RecordQuarantine } from '../../coordinator/quarantine.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { FakeKv } from './fake-kv.ts';

describe('untilKvAnswers', () => {
  it('asks again while KV is unavailable, and returns what finally landed', async () => {
    let calls = 0;
    const out = await untilKvAnswers(async () => {
      if (++calls < 3) throw new FerryError(ErrorCode.Unavailable, 'jetstream is not enabled');
      return 'landed';
    }, new AbortController().signal, 1);
    expect(out).toBe('landed');
    expect(calls).toBe(3);
  });

  it('passes any other failure through at once', async () => {
    let calls = 0;
    const op = async () => {
      calls++;
      throw new FerryError(ErrorCode.Conflict, 'already aborted');
    };
    await expect(untilKvAnswers(op, new AbortController().signal, 1)).rejects.toMatchObject({ code: ErrorCode.Conflict });
    expect(calls).toBe(1);
  });

  it('gives up with the last failure once the phase is aborted', async () => {
    const ac = new AbortController();
    let calls = 0;
    const op = async () => {
      if (++calls === 2) ac.abort();
      throw new FerryError(ErrorCode.Unavailable, 'timeout');
    };
    await expect(untilKvAnswers(op, ac.signal, 1)).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(calls).toBe(2);
  });

  it('a decision made while KV was down lands once KV is back, once', async () => {
    const kv = new FakeKv('ferry_migrations');
    const nc = { publish: () => undefined } as unknown as NatsConnection;
    const store = new MigrationStore(kv as unknown as KV, new RecordQuarantine(nc, new FakeKv('q') as unknown as KV, pino({ level: 'silent' }), 'test'), kv.listKeys);
    kv.down = true;
    setTimeout(() => (kv.down = false), 20);
    const d = await untilKvAnswers(() => store.decide('m-1', 'committed', 1), new AbortController().signal, 5);
    expect(d.decision).toBe('committed');
    expect(await store.decision('m-1')).toMatchObject({ decision: 'committed' });
    expect([...kv.entries.keys()]).toEqual(['m-1.decision']);
  });
});
