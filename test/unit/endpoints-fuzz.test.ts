// Property-based fuzzing of every NATS endpoint's payload, through the real dispatch
// (shared/rpc.ts answer() and call(), decode() for heartbeats and events): arbitrary bytes,
// arbitrary JSON and mutations of valid payloads never throw out of the parse step, never reach
// a handler unless they match the endpoint's schema, and are answered with a typed FerryError.
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { MigrationEventWire } from '../../shared/migration-events.ts';
import { Heartbeat, agentApi, coordinatorApi, replyEnvelope, type EndpointSpec } from '../../shared/protocol.ts';
import { answer, call, decode, encode } from '../../shared/rpc.ts';
import { z } from 'zod';

// Hundreds of runs each: generous on a loaded machine.
vi.setConfig({ testTimeout: 60_000 });

const step = { migrationId: 'm-abc123-00ff', idempotencyKey: 'm-abc123-00ff/freeze', attempt: 1, workload: 'web', peer: 'h2' };
const run = { name: 'web', command: ['/bin/sleep', '100'], env: { A: 'b' }, cwd: '/tmp', address: '10.77.1.5' };

/** One valid request per endpoint: the seed of the mutations. */
const validRequests: Record<string, unknown> = {
  facts: {},
  run,
  workloads: {},
  stop: { name: 'web' },
  ping: {},
  update: { name: 'web', limits: {} },
  'mig.preflight': step,
  'mig.admit': { ...step, limits: {}, requests: {} },
  'mig.freeze': step,
  'mig.receive': step,
  'mig.precopy': { ...step, round: 2, throttle: false, endpoint: { host: '10.77.0.12', port: 40000 } },
  'mig.send': { ...step, endpoint: { host: '10.77.0.12', port: 40000 } },
  'mig.restore': step,
  'mig.resume': step,
  'mig.cleanup': step,
  'mig.postcopy': step,
  'mig.discard': step,
  'mig.thaw': step,
  'coordinator run': { ...run, host: 'h2' },
  hosts: {},
  ps: {},
  migrate: { workload: 'web', to: 'h2', precopy: true, downtimeBudgetMs: 100, maxRounds: 5 },
  status: { id: 'm-abc123-00ff', all: false },
  cancel: { id: 'm-abc123-00ff' },
  cordon: { host: 'h1', reason: 'kernel upgrade' },
  uncordon: { host: 'h1' },
  drain: { host: 'h1', parallel: 2, dryRun: true },
  rebalance: { maxMoves: 3, parallel: 1, dryRun: false },
  fleet: { id: 'd-abc123-00ff' },
  dashboard: {},
  'job.checkpoint': { name: 'web', images: '/shared/ckpt/web', leaveRunning: true },
  'job.restore': { name: 'web', images: '/shared/ckpt/web', takenAddresses: ['10.77.1.2'] },
  checkpoint: { name: 'web', images: '/shared/ckpt/web', leaveRunning: false },
  restore: { name: 'web', images: '/shared/ckpt/web', host: 'h2' },
  operations: { all: true },
  'job.member': { step: 'freeze', name: 'web', token: 'lq3x-0a1b2c3d4e5f', images: '/shared/job/web', leaveRunning: false },
  'job.manifest-write': { images: '/shared/job', manifest: { job: 'sim', takenAt: '2026-12-07T10:00:00.000Z', leftRunning: false, members: [{ workload: 'web', seq: 3, host: 'h1', address: '10.77.1.2' }] } },
  'job.manifest-read': { images: '/shared/job' },
  'checkpoint-job': { job: 'sim', images: '/shared/job', leaveRunning: true },
  'restore-job': { job: 'sim', images: '/shared/job', hosts: ['h3', 'h4'] },
};

const endpoints: [string, EndpointSpec<z.ZodType, z.ZodType>][] = [
  ...Object.entries(agentApi).map(([n, s]) => [`agent ${n}`, s] as [string, EndpointSpec<z.ZodType, z.ZodType>]),
  ...Object.entries(coordinatorApi).map(([n, s]) => [`coordinator ${n}`, s] as [string, EndpointSpec<z.ZodType, z.ZodType>]),
];
const seedOf = (label: string) => validRequests[label] ?? validRequests[label.split(' ')[1]!];

const Envelope = replyEnvelope(z.unknown());

/** Answers `data` through the real answer(); returns the envelope it sent and what reached the handler. */
async function answerBytes(spec: EndpointSpec<z.ZodType, z.ZodType>, data: Uint8Array) {
  const replies: Uint8Array[] = [];
  const msg = { subject: 'ferry.test', data, respond: (d: Uint8Array) => (replies.push(d), true) } as unknown as Msg;
  const reached: unknown[] = [];
  await answer(spec, msg, (req) => {
    reached.push(req);
    return {};
  });
  expect(replies).toHaveLength(1);
  return { env: Envelope.parse(JSON.parse(new TextDecoder().decode(replies[0]))), reached };
}

/** A valid payload with one thing changed: a key removed, a value replaced, or a key added. */
const mutated = (seed: unknown) =>
  fc.oneof(
    fc.constantFrom(...Object.keys(seed as object)).map((k) => {
      const o = { ...(seed as Record<string, unknown>) };
      delete o[k];
      return o;
    }),
    fc.tuple(fc.constantFrom(...Object.keys(seed as object)), fc.jsonValue()).map(([k, v]) => ({ ...(seed as object), [k]: v })),
    fc.tuple(fc.string(), fc.jsonValue()).map(([k, v]) => ({ ...(seed as object), [k]: v })),
  );

describe('every endpoint: hostile payloads never crash the parse step', () => {
  it.each(endpoints)('%s: the valid seed reaches the handler', async (label, spec) => {
    const { env, reached } = await answerBytes(spec, encode(seedOf(label)));
    expect(env.ok).toBe(true);
    expect(reached).toHaveLength(1);
  });

  it.each(endpoints)('%s: arbitrary bytes, JSON and mutated payloads', async (label, spec) => {
    const seed = seedOf(label);
    const payloads = fc.oneof(
      fc.uint8Array({ maxLength: 256 }),
      fc.jsonValue().map((v) => encode(v)),
      ...(Object.keys(seed as object).length > 0 ? [mutated(seed).map((v) => encode(v))] : []),
    );
    await fc.assert(
      fc.asyncProperty(payloads, async (data) => {
        const { env, reached } = await answerBytes(spec, data);
        if (env.ok) {
          // Only what matches the schema reaches a handler.
          expect(reached).toHaveLength(1);
          expect(spec.request.safeParse(reached[0]).success).toBe(true);
        } else {
          expect(reached).toHaveLength(0);
          expect(env.error.code).toBe(ErrorCode.BadMessage);
        }
      }),
      { numRuns: 150 },
    );
  });

  it.each(endpoints)('%s: an arbitrary reply is a typed FerryError to the caller', async (label, spec) => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 256 }), fc.jsonValue().map((v) => encode(v)), fc.jsonValue().map((v) => encode({ ok: true, result: v }))), async (data) => {
        const nc = { request: async () => ({ data }) } as unknown as NatsConnection;
        try {
          const out = await call(nc, 'ferry.test', spec, seedOf(label) as never);
          expect(spec.reply.safeParse(out).success).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(FerryError);
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('published messages: heartbeats and migration events', () => {
  it.each([
    ['heartbeat', Heartbeat],
    ['migration event', MigrationEventWire],
  ] as const)('%s: arbitrary bytes decode to the schema or a FERRY_BAD_MESSAGE', (what, schema) => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 256 }), fc.jsonValue().map((v) => encode(v))), (data) => {
        try {
          expect(schema.safeParse(decode(schema, data, what)).success).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(FerryError);
          expect((err as FerryError).code).toBe(ErrorCode.BadMessage);
        }
      }),
      { numRuns: 300 },
    );
  });
});
