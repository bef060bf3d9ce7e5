// The coordinator's agent client over a lossy transport: NATS core loses a request or its reply
// when a node dies or a side reconnects. Idempotent steps and reads are asked again until an
// answer comes; an answer (even an error) is final; run/stop/update are asked once only.
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { AgentClient } from '../../coordinator/agents.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { encode } from '../../shared/rpc.ts';

/** A connection whose first `lose` requests get no reply (they time out), then answers `reply`. */
function lossy(lose: number, reply: unknown) {
  const asked: string[] = [];
  const nc = {
    request: (subject: string, _data: Uint8Array, o: { timeout: number }) => {
      asked.push(subject);
      if (asked.length <= lose) return new Promise((_, reject) => setTimeout(() => reject(new Error('TIMEOUT')), o.timeout));
      return Promise.resolve({ data: encode(reply) });
    },
  } as unknown as NatsConnection;
  return { nc, asked };
}

const step = { migrationId: 'm-abcd-0001', attempt: 1, workload: 'web', peer: 'h2', idempotencyKey: 'm-abcd-0001:cleanup' };

describe('agent client', () => {
  it('asks an idempotent step again after a lost reply, and returns the answer', async () => {
    const { nc, asked } = lossy(2, { ok: true, result: { done: true } });
    const r = await new AgentClient(nc, 20).call('h1', 'mig.cleanup', step, { timeoutMs: 5_000 });
    expect(r).toEqual({ done: true });
    expect(asked).toEqual(['ferry.agent.h1.mig.cleanup', 'ferry.agent.h1.mig.cleanup', 'ferry.agent.h1.mig.cleanup']);
  });

  it('takes the reply to an earlier ask that comes after later asks were sent (a step held up after its work)', async () => {
    let n = 0;
    const nc = {
      request: (_s: string, _d: Uint8Array, o: { timeout: number }) =>
        ++n === 1 ? new Promise((r) => setTimeout(() => r({ data: encode({ ok: true, result: { done: true } }) }), 80)) : new Promise((_, reject) => setTimeout(() => reject(new Error('TIMEOUT')), o.timeout)),
    } as unknown as NatsConnection;
    expect(await new AgentClient(nc, 20).call('h1', 'mig.cleanup', step, { timeoutMs: 5_000 })).toEqual({ done: true });
    expect(n).toBeGreaterThan(1);
  });

  it('gives up at the endpoint timeout with an unavailable error naming the subject', async () => {
    const { nc, asked } = lossy(1000, null);
    const err = await new AgentClient(nc, 20).call('h1', 'mig.cleanup', step, { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FerryError);
    expect(err).toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/no reply on ferry\.agent\.h1\.mig\.cleanup within 100 ms/) });
    expect(asked.length).toBeGreaterThan(2);
  });

  it('a gone agent (no responders for 3 s) is reported unavailable long before the step timeout', async () => {
    let n = 0;
    const nc = {
      request: () => {
        n++;
        return Promise.reject(new Error('503 no responders available for request'));
      },
    } as unknown as NatsConnection;
    const t0 = Date.now();
    const err = await new AgentClient(nc, 20).call('h1', 'mig.discard', step, { timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/no responders/) });
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(n).toBeGreaterThan(1);
  });

  it("takes the agent's error as its answer, without asking again", async () => {
    const { nc, asked } = lossy(0, { ok: false, error: { code: 'FERRY_NOT_FOUND', message: 'no workload', retryable: false } });
    await expect(new AgentClient(nc, 20).call('h1', 'mig.cleanup', step)).rejects.toMatchObject({ code: ErrorCode.NotFound });
    expect(asked).toHaveLength(1);
  });

  it('asks run once only: a lost answer may hide a started workload', async () => {
    const { nc, asked } = lossy(1000, null);
    const run = { name: 'web', command: ['/bin/true'], env: {}, limits: {}, requests: {} };
    await expect(new AgentClient(nc, 20).call('h1', 'run', run, { timeoutMs: 100 })).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(asked).toHaveLength(1);
  });

  it('stops asking once the caller gives up (its signal)', async () => {
    const { nc, asked } = lossy(1000, null);
    const ctrl = new AbortController();
    const p = new AgentClient(nc, 20).call('h1', 'mig.cleanup', step, { timeoutMs: 10_000, signal: ctrl.signal }).catch((e: unknown) => e);
    setTimeout(() => ctrl.abort(), 70);
    expect(await p).toBeInstanceOf(FerryError);
    const n = asked.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(asked.length).toBe(n);
  });
});
