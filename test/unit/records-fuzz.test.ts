// Every record ferry reads back from KV or disk, fuzzed through the real readers: arbitrary bytes
// in a migration's state or decision, in the lease, in an agent's migration record file or its
// workload registry never throw out of the reader (a decision: only a typed FerryError), and a
// bad record is set aside where it no longer takes part, with an event naming its key. And the
// schemas accept what ferry itself writes: every snapshot of a real statechart run.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createActor } from 'xstate';
import { LeaderLease } from '../../coordinator/lease.ts';
import { MIGRATION_MACHINE_VERSION, migrationActors, migrationMachine, type MigrationInput } from '../../coordinator/machine.ts';
import { RecordQuarantine } from '../../coordinator/quarantine.ts';
import { MigrationStore, type MigrationRecord } from '../../coordinator/store.ts';
import { recordsChannel } from '../../agent/quarantine.ts';
import { MigrationRecords, type LocalMigration } from '../../agent/migration/records.ts';
import { Workloads } from '../../agent/workloads.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { FakeKv } from './fake-kv.ts';
import { LeaseRecord, MigrationStateRecord, type RecordSetAside, parseRecord } from '../../shared/records.ts';

// Hundreds of runs each: generous on a loaded machine.
vi.setConfig({ testTimeout: 60_000 });

const enc = new TextEncoder();

const silent = pino({ level: 'silent' });

function coordinatorSide() {
  const published: RecordSetAside[] = [];
  const nc = { publish: (_s: string, d: Uint8Array) => published.push(JSON.parse(new TextDecoder().decode(d)) as RecordSetAside) } as unknown as NatsConnection;
  const qkv = new FakeKv('ferry_quarantine');
  const quarantine = new RecordQuarantine(nc, qkv as unknown as KV, silent, 'test');
  const kv = new FakeKv('ferry_migrations');
  return { kv, qkv, quarantine, published, store: new MigrationStore(kv as unknown as KV, quarantine, kv.listKeys) };
}

const bytes = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.jsonValue().map((v) => enc.encode(JSON.stringify(v))), fc.string().map((s) => enc.encode(s)));
const ID = 'm-fuzz-0001';

const input = (): MigrationInput => ({
  migrationId: ID,
  source: 'h1',
  destination: 'h2',
  workload: { name: 'web' },
  timeouts: { preflight: 1e4, precopy: 1e4, freeze: 1e4, transfer: 1e4, restore: 1e4, commit: 1e4, resume: 1e4, cleanup: 1e4 },
  precopy: { downtimeBudgetMs: 100, maxRounds: 2, fixedCosts: { freezeMs: 1, dumpMs: 1, resumeMs: 1 } },
});

const round = (n: number) => ({ round: n, pagesScanned: 10, pagesDirty: 1, pagesSent: 10, bytesOnWire: 4096, compressionRatio: 1, durationMs: 1, dirtyRateBps: 1, bandwidthBps: 1e9, predictedDowntimeMs: 1 });

describe('the schemas accept what ferry writes', () => {
  it.each(['completed', 'rolledBack'] as const)('every persisted snapshot of a run that ends %s is a valid state record', async (outcome) => {
    const machine = migrationMachine.provide({
      actors: migrationActors({
        preflight: async () => ({ workloadSupported: { ok: true }, destinationCompatible: { ok: true }, destinationHasMemory: { ok: true }, workloadBytes: 1 }),
        precopyRound: async ({ input: i }) => round(i.round),
        freeze: async () => ({ tasks: 1 }),
        transfer: async () => {
          if (outcome === 'rolledBack') throw new FerryError(ErrorCode.Unavailable, 'gone');
          return { bytesTransferred: 1, bytesOnWire: 1 };
        },
        restore: async () => ({ pid: 1 }),
        recordCommit: async () => ({ revision: 1, committedAt: 1 }),
        resume: async () => ({ pid: 1 }),
        cleanup: async () => undefined,
        rollback: async () => ({ decision: 'aborted', destination: 'leftToItself' }),
      }),
    });
    const actor = createActor(machine, { input: input() });
    const problems: string[] = [];
    actor.subscribe((s) => {
      const record = { machineVersion: MIGRATION_MACHINE_VERSION, createdAt: new Date().toISOString(), request: { workload: 'web', from: 'h1', to: 'h2', precopy: true, downtimeBudgetMs: 100, maxRounds: 2 }, snapshot: actor.getPersistedSnapshot(), final: s.status === 'done' };
      const parsed = parseRecord(MigrationStateRecord, JSON.stringify(record));
      if (!parsed.ok) problems.push(`${JSON.stringify(s.value)}: ${parsed.reason}`);
    });
    const done = new Promise((r) => actor.subscribe({ complete: () => r(null) }));
    actor.start();
    await done;
    expect(actor.getSnapshot().context.outcome).toBe(outcome);
    expect(problems).toEqual([]);
  });
});

describe('KV records: arbitrary bytes are set aside, never a throw', () => {
  it("a migration's state record", async () => {
    await fc.assert(
      fc.asyncProperty(bytes, async (raw) => {
        const { kv, qkv, store, published } = coordinatorSide();
        await kv.put(`${ID}.state`, raw);
        const loaded = await store.load(ID);
        if (loaded) return expect(MigrationStateRecord.safeParse(loaded.record).success).toBe(true);
        expect(kv.entries.has(`${ID}.state`)).toBe(false);
        expect(qkv.entries.has(`ferry_migrations.${ID}.state`)).toBe(true);
        expect(published).toEqual([expect.objectContaining({ key: `${ID}.state`, store: 'kv', where: 'ferry_migrations' })]);
        // What it stood for is recorded aborted: its agents release their halves.
        expect((await store.decision(ID))?.decision).toBe('aborted');
        // And a new migration of the same workload is not blocked by it.
        expect(await store.ids()).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it('a key that names no migration is set aside', async () => {
    await fc.assert(
      fc.asyncProperty(fc.stringMatching(/^[a-zA-Z0-9_=.-]{1,40}$/), bytes, async (key, raw) => {
        fc.pre(!/^m-[a-z0-9-]{4,60}\.(state|decision)$/.test(key));
        const { kv, qkv, store } = coordinatorSide();
        await kv.put(key, raw);
        expect(await store.ids()).toEqual([]);
        expect(kv.entries.has(key)).toBe(false);
        expect(qkv.entries.has(`ferry_migrations.${key}`)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('a decision record: a typed FerryError, the record left in place as a fence', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, async (raw) => {
        const { kv, store, published } = coordinatorSide();
        await kv.put(`${ID}.decision`, raw);
        try {
          const d = await store.decision(ID);
          expect(['committed', 'aborted']).toContain(d?.decision);
        } catch (err) {
          expect(err).toBeInstanceOf(FerryError);
          expect((err as FerryError).code).toBe(ErrorCode.BadMessage);
          expect(kv.entries.has(`${ID}.decision`)).toBe(true);
          expect(published.map((p) => p.key)).toEqual([`${ID}.decision`]);
          // No second decision can be written over it.
          await expect(store.decide(ID, 'committed', 1)).rejects.toBeInstanceOf(FerryError);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('the lease: an unreadable one is reported and taken over', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, async (raw) => {
        const { quarantine, published } = coordinatorSide();
        const kv = new FakeKv('ferry_leases');
        await kv.put('coordinator', raw);
        const lease = new LeaderLease(kv as unknown as KV, 'me', 60_000, quarantine);
        const acquired = new Promise<boolean>((r) => lease.once('acquired', () => r(true)));
        void lease.run();
        const got = await Promise.race([acquired, new Promise<boolean>((r) => setTimeout(() => r(false), 500))]);
        lease.stop();
        const valid = parseRecord(LeaseRecord, raw);
        if (!valid.ok) {
          expect(got).toBe(true);
          expect(published.map((p) => p.key)).toEqual(['coordinator']);
        }
      }),
      { numRuns: 40 },
    );
  });
});

describe('record files on disk: arbitrary bytes are set aside, never a throw', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'ferry-records-fuzz-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("an agent's migration record", () => {
    const seen: unknown[] = [];
    const listener = (m: unknown) => seen.push(m);
    recordsChannel.subscribe(listener);
    try {
      fc.assert(
        fc.property(bytes, (raw) => {
          const dir = tmp();
          const records = new MigrationRecords(dir);
          writeFileSync(path.join(dir, 'migrations', `${ID}.json`), raw);
          seen.length = 0;
          const m = records.get(ID);
          expect(records.all()).toEqual(m ? [m] : []);
          if (m) return;
          expect(existsSync(path.join(dir, 'migrations', `${ID}.json`))).toBe(false);
          expect(readdirSync(path.join(dir, 'migrations', 'quarantine'))).toHaveLength(1);
          expect(seen).toEqual([expect.objectContaining({ store: 'disk', key: `${ID}.json` })]);
          // A new record of the same migration can be written and read again.
          const fresh: LocalMigration = { id: ID, role: 'source', workload: 'web', peer: 'h2', fenced: false, done: {}, held: null, imageDir: '/x', restoredPid: null, workloadCommand: null };
          records.save(fresh);
          expect(records.get(ID)).toEqual(fresh);
        }),
        { numRuns: 60 },
      );
    } finally {
      recordsChannel.unsubscribe(listener);
    }
  });

  it("an agent's workload registry", () => {
    fc.assert(
      fc.property(fc.oneof(bytes, fc.array(fc.jsonValue(), { maxLength: 4 }).map((a) => enc.encode(JSON.stringify(a)))), (raw) => {
        const dir = tmp();
        writeFileSync(path.join(dir, 'workloads.json'), raw);
        const w = new Workloads('h1', dir, {}, 'ferry-fuzz/h1');
        // What it lists came through the schema; the rest is set aside.
        expect(Array.isArray(w.list())).toBe(true);
        const file = path.join(dir, 'workloads.json');
        // Either the file is set aside whole, or what stays in it is a list of entries.
        if (existsSync(file)) expect(Array.isArray(JSON.parse(readFileSync(file, 'utf8')))).toBe(true);
        else expect(readdirSync(path.join(dir, 'quarantine'))).toHaveLength(1);
      }),
      { numRuns: 60 },
    );
  });
});

// The record type the store writes is the shape the schema reads.
const _written: MigrationRecord = { machineVersion: 1, createdAt: '', request: { workload: 'w', from: 'a', to: 'b', precopy: true, downtimeBudgetMs: 1 }, snapshot: null, final: false };
void _written;
