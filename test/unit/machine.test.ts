import { afterEach, describe, expect, it } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { EVENT_DATA } from '../../shared/migration-events.ts';
import type { ConvergenceConfig } from '../../coordinator/convergence.ts';
import {
  createMigrationActor,
  migrationActors,
  migrationMachine,
  restoreMigrationActor,
  topState,
  type MigrationActorFns,
  type MigrationEmitted,
  type MigrationInput,
  type MigrationResult,
} from '../../coordinator/machine.ts';
import type { MigrationActorContracts, MigrationActorName, Phase, RoundStats } from '../../coordinator/phases.ts';

// ---- harness ----------------------------------------------------------------------------------

const TIMEOUTS: Record<Phase, number> = {
  preflight: 5_000,
  precopy: 60_000,
  freeze: 10_000,
  transfer: 120_000,
  restore: 30_000,
  commit: 5_000,
  resume: 10_000,
  cleanup: 20_000,
};

const PRECOPY: ConvergenceConfig = {
  downtimeBudgetMs: 50,
  fixedCosts: { freezeMs: 10, dumpMs: 10, resumeMs: 10 },
  maxRounds: 8,
};

const baseInput = (over: Partial<MigrationInput> = {}): MigrationInput => ({
  migrationId: 'mig-1',
  source: 'host-a',
  destination: 'host-b',
  workload: { name: 'web' },
  timeouts: TIMEOUTS,
  precopy: PRECOPY,
  rollback: { initialMs: 1_000, maxMs: 8_000, factor: 2, timeoutMs: 15_000, maxAttempts: 4 },
  rollForward: { initialMs: 500, maxMs: 4_000, factor: 2 },
  ...over,
});

/** What a fake does on one call: succeed (default output), hang until aborted, fail, or custom. */
type Step =
  | 'ok'
  | 'hang'
  | 'fail'
  | { output: unknown }
  | { error: unknown }
  | { advance: number; then?: Step };

type Script = Partial<Record<MigrationActorName, Step[]>>;

/** Dirty pages per round: converges on round 3 with PRECOPY (see the convergence rule). */
const dirtyByRound = [5000, 500, 50];
const roundStats = (round: number, over: Partial<RoundStats> = {}): RoundStats => ({
  round,
  pagesScanned: 10_000,
  pagesDirty: dirtyByRound[round - 1] ?? 10,
  pagesSent: round === 1 ? 10_000 : (dirtyByRound[round - 2] ?? 10),
  bytesOnWire: 1_000 * round,
  compressionRatio: 1,
  durationMs: 100,
  dirtyRateBps: 1e6,
  bandwidthBps: 1e8,
  predictedDowntimeMs: 0,
  ...over,
});

function defaultOutput(name: MigrationActorName, input: Record<string, unknown>): unknown {
  switch (name) {
    case 'preflight':
      return { workloadSupported: { ok: true }, destinationCompatible: { ok: true }, destinationHasMemory: { ok: true }, workloadBytes: 1 << 20 };
    case 'precopyRound':
      return roundStats(typeof input.round === 'number' ? input.round : 1);
    case 'freeze':
      return { tasks: 1 };
    case 'transfer':
      return { bytesTransferred: 204_800, bytesOnWire: 100_000 };
    case 'restore':
      return { pid: 77 };
    case 'recordCommit':
      return { revision: 7, committedAt: 123 };
    case 'resume':
      return { pid: 77 };
    case 'cleanup':
      return undefined;
    case 'rollback':
      return { decision: 'aborted' };
  }
}

const NAMES: MigrationActorName[] = ['preflight', 'precopyRound', 'freeze', 'transfer', 'restore', 'recordCommit', 'resume', 'cleanup', 'rollback'];

interface Call {
  input: Record<string, unknown> & { migrationId: string; phase: string; attempt: number; idempotencyKey: string };
  signal: AbortSignal;
}

function fakes(script: Script, clock: SimulatedClock) {
  const calls = Object.fromEntries(NAMES.map((n) => [n, [] as Call[]])) as Record<MigrationActorName, Call[]>;
  const run = async (name: MigrationActorName, step: Step, input: Call['input'], signal: AbortSignal): Promise<unknown> => {
    if (step === 'ok') return defaultOutput(name, input);
    if (step === 'fail') throw new FerryError(ErrorCode.Syscall, `${name} failed`, { details: { call: name, errno: 5, errnoName: 'EIO' } });
    if (step === 'hang') {
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new FerryError(ErrorCode.Cancelled, 'aborted'))));
    }
    if ('output' in step) return step.output;
    if ('error' in step) throw step.error;
    clock.increment(step.advance);
    return run(name, step.then ?? 'ok', input, signal);
  };
  const fns = Object.fromEntries(
    NAMES.map((name) => [
      name,
      async ({ input, signal }: { input: Call['input']; signal: AbortSignal }) => {
        const i = calls[name].push({ input, signal }) - 1;
        const step = script[name]?.[i] ?? 'ok';
        return run(name, step, input, signal);
      },
    ]),
  ) as unknown as MigrationActorFns;
  return { calls, fns };
}

// Every event the machine emits must be what its watchers accept (shared/migration-events.ts):
// a mismatch is collected here and fails the test that produced it.
const offWire: string[] = [];
afterEach(() => {
  const bad = offWire.splice(0);
  expect(bad).toEqual([]);
});
function checkOnWire(e: MigrationEmitted): MigrationEmitted {
  const { type, at: _at, migrationId: _id, ...data } = e;
  const r = EVENT_DATA[type].safeParse(data);
  if (!r.success) offWire.push(`${type}: ${r.error.message}`);
  return e;
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

function start(opts: { input?: Partial<MigrationInput>; script?: Script } = {}) {
  const clock = new SimulatedClock();
  clock.set(1_000_000);
  const f = fakes(opts.script ?? {}, clock);
  const machine = migrationMachine.provide({ actors: migrationActors(f.fns) });
  const actor = createMigrationActor(machine, baseInput(opts.input), { clock });
  const emitted: MigrationEmitted[] = [];
  const states: string[] = [];
  actor.on('*', (e) => emitted.push(checkOnWire(e)));
  actor.subscribe((s) => {
    const v = JSON.stringify(s.value);
    if (states.at(-1) !== v) states.push(v);
  });
  actor.start();
  return { actor, clock, calls: f.calls, emitted, states, machine };
}

const top = (h: { actor: { getSnapshot(): { value: unknown } } }) => topState(h.actor.getSnapshot().value);
const output = (h: { actor: { getSnapshot(): { output?: unknown } } }) => h.actor.getSnapshot().output as MigrationResult;

const PRE_COMMIT: Array<{ phase: Phase; actor: MigrationActorName }> = [
  { phase: 'preflight', actor: 'preflight' },
  { phase: 'precopy', actor: 'precopyRound' },
  { phase: 'freeze', actor: 'freeze' },
  { phase: 'transfer', actor: 'transfer' },
  { phase: 'restore', actor: 'restore' },
  { phase: 'commit', actor: 'recordCommit' },
];
const POST_COMMIT: Array<{ phase: Phase; actor: MigrationActorName }> = [
  { phase: 'resume', actor: 'resume' },
  { phase: 'cleanup', actor: 'cleanup' },
];

// ---- happy paths ------------------------------------------------------------------------------

describe('migration machine: happy paths', () => {
  it('runs every phase in order with pre-copy rounds until the rule switches over', async () => {
    const h = start();
    await settle();
    expect(h.states).toEqual([
      '"preflight"',
      '{"precopy":"round"}',
      '"freeze"',
      '"transfer"',
      '"restore"',
      '"commit"',
      '{"resume":"running"}',
      '{"cleanup":"running"}',
      '"completed"',
    ]);
    const out = output(h);
    expect(out.outcome).toBe('completed');
    expect(out.committed).toBe(true);
    expect(out.error).toBeNull();
    expect(out.needsOperator).toBe(false);
    expect(out.rounds).toBe(3);
    expect(out.bytesTransferred).toBe(204_800);
    expect(out.bytesOnWire).toBe(1_000 + 2_000 + 3_000 + 100_000);
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.lastDecision).toMatchObject({ action: 'switchover', reason: 'budget' });
    expect(ctx.rounds.map((r) => r.round)).toEqual([1, 2, 3]);
    expect(ctx.commit).toEqual({ revision: 7, committedAt: 123 });
    expect(h.calls.rollback).toHaveLength(0);
    for (const p of ['preflight', 'precopy', 'freeze', 'transfer', 'restore', 'commit', 'resume', 'cleanup'] as const) {
      expect(ctx.phases[p].startedAt, p).toBe(1_000_000);
      expect(ctx.phases[p].endedAt, p).toBe(1_000_000);
    }
    expect(h.actor.getSnapshot().status).toBe('done');
  });

  it('emits phase entry/exit, attempts, rounds, the commit and the end, in order', async () => {
    const h = start();
    await settle();
    const seq = h.emitted.map((e) => ('phase' in e ? `${e.type}:${e.phase}` : e.type));
    expect(seq).toEqual([
      'phase.entered:preflight',
      'phase.attempt:preflight',
      'phase.exited:preflight',
      'phase.entered:precopy',
      'phase.attempt:precopy',
      'round',
      'phase.attempt:precopy',
      'round',
      'phase.attempt:precopy',
      'round',
      'phase.exited:precopy',
      'phase.entered:freeze',
      'phase.attempt:freeze',
      'phase.exited:freeze',
      'phase.entered:transfer',
      'phase.attempt:transfer',
      'phase.exited:transfer',
      'phase.entered:restore',
      'phase.attempt:restore',
      'phase.exited:restore',
      'phase.entered:commit',
      'phase.attempt:commit',
      'phase.exited:commit',
      'commit.recorded',
      'phase.entered:resume',
      'phase.attempt:resume',
      'phase.exited:resume',
      'phase.entered:cleanup',
      'phase.attempt:cleanup',
      'phase.exited:cleanup',
      'migration.ended',
    ]);
    const rounds = h.emitted.filter((e) => e.type === 'round');
    expect(rounds.map((r) => r.decision.action)).toEqual(['continue', 'continue', 'switchover']);
    const ended = h.emitted.at(-1);
    expect(ended).toMatchObject({ type: 'migration.ended', outcome: 'completed', migrationId: 'mig-1' });
    for (const e of h.emitted) expect(e.migrationId).toBe('mig-1');
  });

  it('stop-and-copy (precopy: false) passes through precopy without rounds', async () => {
    const h = start({ input: { precopy: false } });
    await settle();
    expect(h.states).toEqual(['"preflight"', '"freeze"', '"transfer"', '"restore"', '"commit"', '{"resume":"running"}', '{"cleanup":"running"}', '"completed"']);
    expect(h.calls.precopyRound).toHaveLength(0);
    expect(h.calls.transfer[0]?.input.precopyRounds).toBe(0);
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.rounds).toEqual([]);
    expect(ctx.phases.precopy).toEqual({ attempts: 0, startedAt: 1_000_000, endedAt: 1_000_000 });
    const seq = h.emitted.map((e) => ('phase' in e ? `${e.type}:${e.phase}` : e.type));
    expect(seq).toContain('phase.entered:precopy');
    expect(seq).toContain('phase.exited:precopy');
    expect(seq).not.toContain('round');
    expect(output(h).outcome).toBe('completed');
  });

  it('records per-phase times and the downtime from the actor clock', async () => {
    const h = start({
      input: { precopy: false },
      script: { freeze: [{ advance: 100 }], transfer: [{ advance: 200 }], restore: [{ advance: 50 }], recordCommit: [{ advance: 5 }], resume: [{ advance: 20 }] },
    });
    await settle();
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.freezeAt).toBe(1_000_000);
    expect(ctx.resumeAt).toBe(1_000_375);
    expect(ctx.downtimeMs).toBe(375);
    expect(ctx.phases.freeze).toEqual({ attempts: 1, startedAt: 1_000_000, endedAt: 1_000_100 });
    expect(ctx.phases.transfer).toEqual({ attempts: 1, startedAt: 1_000_100, endedAt: 1_000_300 });
    expect(ctx.phases.resume).toEqual({ attempts: 1, startedAt: 1_000_355, endedAt: 1_000_375 });
    expect(ctx.startedAt).toBe(1_000_000);
    expect(ctx.endedAt).toBe(1_000_375);
    expect(output(h).downtimeMs).toBe(375);
  });

  it('throttles when rounds stop making progress while the writes outrun the link, then switches over for no progress', async () => {
    const stuck = (round: number, throttled = false): Step => ({ output: roundStats(round, { pagesDirty: 5000, throttled, dirtyRateBps: 2e8 }) });
    const h = start({ script: { precopyRound: [stuck(1), stuck(2), stuck(3, true)] } });
    await settle();
    const ctx = h.actor.getSnapshot().context;
    expect(h.calls.precopyRound.map((c) => c.input.throttle)).toEqual([false, false, true]);
    expect(h.emitted.filter((e) => e.type === 'round').map((e) => e.decision.action)).toEqual(['continue', 'throttle', 'switchover']);
    expect(ctx.lastDecision).toMatchObject({ action: 'switchover', reason: 'no-progress' });
    expect(output(h).outcome).toBe('completed');
  });

  it('switches over at the round limit', async () => {
    const slow = (round: number): Step => ({ output: roundStats(round, { pagesDirty: 5000 - round * 1000 }) });
    const h = start({ input: { precopy: { ...PRECOPY, maxRounds: 2 } }, script: { precopyRound: [slow(1), slow(2)] } });
    await settle();
    expect(h.calls.precopyRound).toHaveLength(2);
    expect(h.actor.getSnapshot().context.lastDecision).toMatchObject({ action: 'switchover', reason: 'round-limit' });
    expect(output(h).outcome).toBe('completed');
  });

  it('passes the previous round to the next and numbers rounds', async () => {
    const h = start();
    await settle();
    expect(h.calls.precopyRound.map((c) => c.input.round)).toEqual([1, 2, 3]);
    expect(h.calls.precopyRound[0]?.input.previous).toBeNull();
    expect(h.calls.precopyRound[2]?.input.previous).toMatchObject({ round: 2, pagesDirty: 500 });
  });
});

// ---- idempotency contract ---------------------------------------------------------------------

describe('migration machine: actor inputs', () => {
  it('every actor input carries migrationId, phase, attempt and a migrationId/phase idempotency key', async () => {
    const h = start();
    await settle();
    const phaseOf: Record<MigrationActorName, string> = {
      preflight: 'preflight',
      precopyRound: 'precopy',
      freeze: 'freeze',
      transfer: 'transfer',
      restore: 'restore',
      recordCommit: 'commit',
      resume: 'resume',
      cleanup: 'cleanup',
      rollback: 'rollback',
    };
    for (const name of NAMES.filter((n) => n !== 'rollback')) {
      expect(h.calls[name].length, name).toBeGreaterThan(0);
      for (const { input } of h.calls[name]) {
        expect(input).toMatchObject({
          migrationId: 'mig-1',
          phase: phaseOf[name],
          attempt: 1,
          source: 'host-a',
          destination: 'host-b',
          workload: { name: 'web' },
        });
        const key = name === 'precopyRound' ? `mig-1/precopy/${String(input.round)}` : `mig-1/${phaseOf[name]}`;
        expect(input.idempotencyKey).toBe(key);
      }
    }
  });

  it('a retry keeps the idempotency key and increments attempt', async () => {
    const h = start({ input: { precopy: false }, script: { resume: ['fail', 'fail', 'ok'] } });
    await settle();
    h.clock.increment(500);
    await settle();
    h.clock.increment(1_000);
    await settle();
    expect(h.calls.resume.map((c) => [c.input.attempt, c.input.idempotencyKey])).toEqual([
      [1, 'mig-1/resume'],
      [2, 'mig-1/resume'],
      [3, 'mig-1/resume'],
    ]);
    expect(output(h).outcome).toBe('completed');
  });

  it('rollback input carries the phase it rolls back from and the cause', async () => {
    const h = start({ script: { transfer: ['fail'] } });
    await settle();
    expect(h.calls.rollback[0]?.input).toMatchObject({
      migrationId: 'mig-1',
      phase: 'rollback',
      attempt: 1,
      idempotencyKey: 'mig-1/rollback',
      fromPhase: 'transfer',
      cause: { code: ErrorCode.Syscall, phase: 'transfer', kind: 'error', details: { call: 'transfer', errno: 5, errnoName: 'EIO' } },
    });
  });

  it('placeholder actors throw until provided: the migration ends failed, never completed', async () => {
    const clock = new SimulatedClock();
    const actor = createMigrationActor(migrationMachine, baseInput({ rollback: { maxAttempts: 2, initialMs: 10 } }), { clock });
    actor.start();
    await settle();
    clock.increment(10);
    await settle();
    const out = actor.getSnapshot().output as MigrationResult;
    expect(out.outcome).toBe('failed');
    expect(out.error).toMatchObject({ code: ErrorCode.Internal, phase: 'preflight' });
    expect(out.error?.message).toMatch(/'preflight' was not provided/);
    expect(out.rollbackError?.message).toMatch(/'rollback' was not provided/);
  });

  it('rejects input without a timeout for every phase', () => {
    const { commit: _omit, ...partial } = TIMEOUTS;
    const actor = createMigrationActor(migrationMachine, baseInput({ timeouts: partial as Record<Phase, number> }));
    const errors: unknown[] = [];
    actor.subscribe({ error: (e) => errors.push(e) });
    actor.start();
    expect(actor.getSnapshot().status).toBe('error');
    expect(errors[0]).toMatchObject({ code: ErrorCode.InvalidRequest });
  });
});

// ---- failures before commit: roll back --------------------------------------------------------

describe('migration machine: before commit, every failure rolls back', () => {
  it.each(PRE_COMMIT)('an error in $phase rolls back', async ({ phase, actor }) => {
    const script: Script = { [actor]: ['fail'] };
    const h = start({ script });
    await settle();
    expect(top(h)).toBe('rolledBack');
    const out = output(h);
    expect(out.outcome).toBe('rolledBack');
    expect(out.committed).toBe(false);
    expect(out.error).toMatchObject({ code: ErrorCode.Syscall, phase, kind: 'error' });
    expect(h.calls.rollback).toHaveLength(1);
    expect(h.calls.rollback[0]?.input.fromPhase).toBe(phase);
    expect(h.calls.resume).toHaveLength(0);
    expect(h.emitted).toContainEqual(expect.objectContaining({ type: 'phase.failed', phase, next: 'rollback' }));
    expect(h.emitted).toContainEqual(expect.objectContaining({ type: 'rollback.started', fromPhase: phase }));
  });

  it.each(PRE_COMMIT)('a timeout in $phase aborts its actor and rolls back', async ({ phase, actor }) => {
    const h = start({ script: { [actor]: ['hang'] } });
    await settle();
    expect(top(h)).toBe(phase);
    h.clock.increment(TIMEOUTS[phase] - 1);
    await settle();
    expect(top(h)).toBe(phase);
    h.clock.increment(1);
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(h.calls[actor].at(-1)?.signal.aborted).toBe(true);
    expect(output(h).error).toMatchObject({ code: ErrorCode.Timeout, phase, kind: 'timeout' });
    expect(h.calls.rollback[0]?.input.fromPhase).toBe(phase);
  });

  it.each(PRE_COMMIT)('CANCEL in $phase rolls back', async ({ phase, actor }) => {
    const h = start({ script: { [actor]: ['hang'] } });
    await settle();
    expect(top(h)).toBe(phase);
    h.actor.send({ type: 'CANCEL', reason: 'operator said so', at: 42 });
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(h.calls[actor].at(-1)?.signal.aborted).toBe(true);
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.error).toMatchObject({ code: ErrorCode.Cancelled, phase, kind: 'cancelled', message: 'cancelled: operator said so' });
    expect(ctx.cancelRequested).toEqual({ at: 42, reason: 'operator said so' });
    expect(ctx.refused).toEqual([]);
    expect(output(h).outcome).toBe('rolledBack');
  });

  it.each(PRE_COMMIT.flatMap((p) => (['source', 'destination'] as const).map((role) => ({ ...p, role }))))(
    'AGENT_LOST ($role) in $phase rolls back',
    async ({ phase, actor, role }) => {
      const h = start({ script: { [actor]: ['hang'] } });
      await settle();
      h.actor.send({ type: 'AGENT_LOST', role });
      await settle();
      expect(top(h)).toBe('rolledBack');
      const ctx = h.actor.getSnapshot().context;
      expect(ctx.error).toMatchObject({ code: ErrorCode.Unavailable, phase, kind: 'agentLost' });
      expect(ctx.agentsLost).toEqual([{ role, host: role === 'source' ? 'host-a' : 'host-b', at: 1_000_000, during: phase, effect: 'rollback' }]);
      expect(h.emitted).toContainEqual(expect.objectContaining({ type: 'agent.lost', role, effect: 'rollback' }));
    },
  );

  it('a failed preflight check rolls back with the check error', async () => {
    const h = start({
      script: {
        preflight: [
          {
            output: {
              workloadSupported: { ok: true },
              destinationCompatible: { ok: true },
              destinationHasMemory: { ok: false, error: { code: ErrorCode.Incompatible, message: 'need 2 GiB, 1 GiB free', retryable: false } },
              workloadBytes: 2 << 30,
            },
          },
        ],
      },
    });
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(output(h).error).toEqual({ code: ErrorCode.Incompatible, message: 'need 2 GiB, 1 GiB free', retryable: false, phase: 'preflight', kind: 'preflight' });
    expect(h.calls.precopyRound).toHaveLength(0);
  });

  it('a preflight check failing without an error gets a default code', async () => {
    const h = start({
      script: {
        preflight: [{ output: { workloadSupported: { ok: false }, destinationCompatible: { ok: true }, destinationHasMemory: { ok: true }, workloadBytes: 1 } }],
      },
    });
    await settle();
    expect(output(h).error).toMatchObject({ code: ErrorCode.Unsupported, kind: 'preflight' });
  });

  it('foreign errors are recorded as Internal with their message', async () => {
    const h = start({ script: { freeze: [{ error: new Error('boom') }] } });
    await settle();
    expect(output(h).error).toMatchObject({ code: ErrorCode.Internal, message: 'boom', phase: 'freeze' });
  });

  it('downtime after a rollback runs from freeze to the thaw', async () => {
    const h = start({ input: { precopy: false }, script: { freeze: [{ advance: 10 }], transfer: [{ advance: 30, then: 'fail' }], rollback: [{ advance: 7 }] } });
    await settle();
    expect(output(h).downtimeMs).toBe(47);
  });
});

// ---- rollback retries -------------------------------------------------------------------------

describe('migration machine: rollback retries', () => {
  it('retries a failing rollback with exponential backoff until it succeeds', async () => {
    const h = start({ script: { freeze: ['fail'], rollback: ['fail', 'fail', 'ok'] } });
    await settle();
    expect(h.actor.getSnapshot().value).toEqual({ rollingBack: 'backoff' });
    h.clock.increment(999);
    await settle();
    expect(h.calls.rollback).toHaveLength(1);
    h.clock.increment(1);
    await settle();
    expect(h.calls.rollback).toHaveLength(2);
    h.clock.increment(1_999);
    await settle();
    expect(h.calls.rollback).toHaveLength(2);
    h.clock.increment(1);
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(h.calls.rollback.map((c) => c.input.attempt)).toEqual([1, 2, 3]);
    expect(h.calls.rollback.every((c) => c.input.idempotencyKey === 'mig-1/rollback')).toBe(true);
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.rollback).toMatchObject({ attempts: 3, fromPhase: 'freeze', decision: 'aborted' });
    expect(ctx.error).toMatchObject({ phase: 'freeze' });
  });

  it('retries a rollback that times out', async () => {
    const h = start({ script: { restore: ['fail'], rollback: ['hang', 'ok'] } });
    await settle();
    h.clock.increment(15_000);
    await settle();
    expect(h.calls.rollback[0]?.signal.aborted).toBe(true);
    expect(h.actor.getSnapshot().context.rollback.lastError).toMatchObject({ code: ErrorCode.Timeout, phase: 'rollback', kind: 'timeout' });
    h.clock.increment(1_000);
    await settle();
    expect(top(h)).toBe('rolledBack');
  });

  it('lands in failed (needs an operator) when the rollback never succeeds', async () => {
    const h = start({ script: { freeze: ['fail'], rollback: ['fail', 'fail', 'fail', 'fail', 'ok'] } });
    await settle();
    for (const ms of [1_000, 2_000, 4_000]) {
      expect(top(h)).toBe('rollingBack');
      h.clock.increment(ms);
      await settle();
    }
    expect(top(h)).toBe('failed');
    expect(h.calls.rollback).toHaveLength(4);
    const out = output(h);
    expect(out).toMatchObject({ outcome: 'failed', needsOperator: true, committed: false });
    expect(out.error).toMatchObject({ phase: 'freeze' });
    expect(out.rollbackError).toMatchObject({ code: ErrorCode.Syscall, phase: 'rollback' });
    expect(h.calls.resume).toHaveLength(0);
    expect(h.emitted.filter((e) => e.type === 'phase.failed' && e.phase === 'rollback').map((e) => (e.type === 'phase.failed' ? e.next : ''))).toEqual([
      'retry',
      'retry',
      'retry',
      'failed',
    ]);
    h.clock.increment(100_000);
    await settle();
    expect(h.calls.rollback).toHaveLength(4);
  });

  it('the backoff is capped', async () => {
    const h = start({ input: { rollback: { initialMs: 1_000, maxMs: 1_500, factor: 10, maxAttempts: 3, timeoutMs: 15_000 } }, script: { freeze: ['fail'], rollback: ['fail', 'fail', 'ok'] } });
    await settle();
    h.clock.increment(1_000);
    await settle();
    expect(h.calls.rollback).toHaveLength(2);
    h.clock.increment(1_500);
    await settle();
    expect(top(h)).toBe('rolledBack');
  });

  it('CANCEL and AGENT_LOST while rolling back are recorded and change nothing', async () => {
    const h = start({ script: { freeze: ['fail'], rollback: ['fail', 'ok'] } });
    await settle();
    h.actor.send({ type: 'CANCEL' });
    h.actor.send({ type: 'AGENT_LOST', role: 'destination' });
    await settle();
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.refused).toEqual([{ type: 'CANCEL', at: 1_000_000, during: 'rollback', reason: 'migration is already rolling back' }]);
    expect(ctx.agentsLost).toEqual([{ role: 'destination', host: 'host-b', at: 1_000_000, during: 'rollback', effect: 'none' }]);
    h.clock.increment(1_000);
    await settle();
    expect(top(h)).toBe('rolledBack');
  });

  it('rolls forward when the rollback finds the commit already recorded', async () => {
    const h = start({ script: { recordCommit: ['hang'], rollback: [{ output: { decision: 'committed', revision: 9, committedAt: 555 } }] } });
    await settle();
    h.clock.increment(TIMEOUTS.commit);
    await settle();
    expect(top(h)).toBe('completed');
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.committed).toBe(true);
    expect(ctx.commit).toEqual({ revision: 9, committedAt: 555 });
    expect(ctx.rollback.decision).toBe('committed');
    expect(h.calls.resume).toHaveLength(1);
    expect(output(h).outcome).toBe('completed');
  });
});

// ---- after commit: roll forward only ----------------------------------------------------------

describe('migration machine: after commit, only roll forward', () => {
  it.each(POST_COMMIT)('an error in $phase is retried with backoff, never rolled back', async ({ phase, actor }) => {
    const h = start({ script: { [actor]: ['fail', 'fail', 'ok'] } });
    await settle();
    expect(h.actor.getSnapshot().value).toEqual({ [phase]: 'backoff' });
    h.clock.increment(499);
    await settle();
    expect(h.calls[actor]).toHaveLength(1);
    h.clock.increment(1);
    await settle();
    expect(h.calls[actor]).toHaveLength(2);
    h.clock.increment(1_000);
    await settle();
    expect(top(h)).toBe('completed');
    expect(h.calls.rollback).toHaveLength(0);
    expect(h.actor.getSnapshot().context.phases[phase].attempts).toBe(3);
    expect(h.emitted.filter((e) => e.type === 'phase.failed')).toEqual([
      expect.objectContaining({ phase, attempt: 1, next: 'retry' }),
      expect.objectContaining({ phase, attempt: 2, next: 'retry' }),
    ]);
    expect(output(h)).toMatchObject({ outcome: 'completed', error: null });
  });

  it.each(POST_COMMIT)('a timeout in $phase aborts the attempt and retries', async ({ phase, actor }) => {
    const h = start({ script: { [actor]: ['hang', 'ok'] } });
    await settle();
    h.clock.increment(TIMEOUTS[phase]);
    await settle();
    expect(h.calls[actor][0]?.signal.aborted).toBe(true);
    expect(h.actor.getSnapshot().context.lastRetryError).toMatchObject({ code: ErrorCode.Timeout, phase, kind: 'timeout' });
    h.clock.increment(500);
    await settle();
    expect(top(h)).toBe('completed');
    expect(h.calls.rollback).toHaveLength(0);
  });

  it('keeps retrying past any number of failures (backoff capped)', async () => {
    const h = start({ script: { resume: Array<Step>(12).fill('fail') } });
    await settle();
    for (let i = 0; i < 12; i++) {
      h.clock.increment(4_000);
      await settle();
    }
    expect(h.calls.resume).toHaveLength(13);
    expect(top(h)).toBe('completed');
    expect(h.calls.rollback).toHaveLength(0);
  });

  it.each(POST_COMMIT)('CANCEL in $phase is refused and the migration completes', async ({ phase, actor }) => {
    const h = start({ script: { [actor]: ['hang', 'ok'] } });
    await settle();
    h.actor.send({ type: 'CANCEL', reason: 'too late' });
    await settle();
    expect(top(h)).toBe(phase);
    expect(h.calls[actor][0]?.signal.aborted).toBe(false);
    const ctx = h.actor.getSnapshot().context;
    expect(ctx.refused).toEqual([{ type: 'CANCEL', at: 1_000_000, during: phase, reason: 'migration already committed; it can only roll forward' }]);
    expect(h.emitted).toContainEqual(expect.objectContaining({ type: 'cancel.refused', during: phase }));
    h.clock.increment(TIMEOUTS[phase]);
    await settle();
    h.clock.increment(500);
    await settle();
    expect(top(h)).toBe('completed');
    expect(h.calls.rollback).toHaveLength(0);
  });

  it.each(POST_COMMIT.flatMap((p) => (['source', 'destination'] as const).map((role) => ({ ...p, role }))))(
    'AGENT_LOST ($role) in $phase is recorded; retries continue until it completes',
    async ({ phase, actor, role }) => {
      const h = start({ script: { [actor]: ['fail', 'ok'] } });
      await settle();
      h.actor.send({ type: 'AGENT_LOST', role, at: 7 });
      await settle();
      expect(h.actor.getSnapshot().context.agentsLost).toEqual([{ role, host: role === 'source' ? 'host-a' : 'host-b', at: 7, during: phase, effect: 'none' }]);
      h.clock.increment(500);
      await settle();
      expect(top(h)).toBe('completed');
      expect(h.calls.rollback).toHaveLength(0);
    },
  );

  it.each([
    { phase: 'resume', actor: 'resume', role: 'destination' },
    { phase: 'cleanup', actor: 'cleanup', role: 'source' },
  ] as const)('AGENT_LOST of the $role during a hung $phase attempt retries without waiting out the timeout', async ({ phase, actor, role }) => {
    const h = start({ script: { [actor]: ['hang', 'ok'] } });
    await settle();
    expect(h.actor.getSnapshot().context.phase).toBe(phase);
    h.actor.send({ type: 'AGENT_LOST', role, at: 7 });
    await settle();
    expect(h.actor.getSnapshot().context.lastRetryError).toMatchObject({ kind: 'agentLost', phase });
    h.clock.increment(500);
    await settle();
    expect(top(h)).toBe('completed');
    expect(h.calls[actor]).toHaveLength(2);
  });

  it('AGENT_LOST during a hung rollback attempt retries the rollback', async () => {
    const h = start({ script: { freeze: ['fail'], rollback: ['hang', 'ok'] } });
    await settle();
    h.actor.send({ type: 'AGENT_LOST', role: 'source' });
    await settle();
    expect(h.actor.getSnapshot().context.rollback.lastError).toMatchObject({ kind: 'agentLost' });
    h.clock.increment(1_000);
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(h.calls.rollback).toHaveLength(2);
  });

  it('CANCEL after completion changes nothing', async () => {
    const h = start();
    await settle();
    h.actor.send({ type: 'CANCEL' });
    await settle();
    expect(output(h).outcome).toBe('completed');
  });
});

// ---- persistence and rehydration --------------------------------------------------------------

interface RestingState {
  name: string;
  value: unknown;
  script: Script;
  /** Clock advance on the old actor to reach the state. */
  advance?: number;
  /** The actor restarted by rehydration, if the state has one in flight. */
  inFlight?: MigrationActorName;
  /** Clock advance on the new actor to finish (backoffs). */
  finishAdvance?: number;
  outcome: 'completed' | 'rolledBack' | 'failed';
}

const RESTING: RestingState[] = [
  { name: 'preflight', value: 'preflight', script: { preflight: ['hang'] }, inFlight: 'preflight', outcome: 'completed' },
  { name: 'precopy.round', value: { precopy: 'round' }, script: { precopyRound: ['ok', 'hang'] }, inFlight: 'precopyRound', outcome: 'completed' },
  { name: 'freeze', value: 'freeze', script: { freeze: ['hang'] }, inFlight: 'freeze', outcome: 'completed' },
  { name: 'transfer', value: 'transfer', script: { transfer: ['hang'] }, inFlight: 'transfer', outcome: 'completed' },
  { name: 'restore', value: 'restore', script: { restore: ['hang'] }, inFlight: 'restore', outcome: 'completed' },
  { name: 'commit', value: 'commit', script: { recordCommit: ['hang'] }, inFlight: 'recordCommit', outcome: 'completed' },
  { name: 'resume.running', value: { resume: 'running' }, script: { resume: ['hang'] }, inFlight: 'resume', outcome: 'completed' },
  { name: 'resume.backoff', value: { resume: 'backoff' }, script: { resume: ['fail'] }, finishAdvance: 500, outcome: 'completed' },
  { name: 'cleanup.running', value: { cleanup: 'running' }, script: { cleanup: ['hang'] }, inFlight: 'cleanup', outcome: 'completed' },
  { name: 'cleanup.backoff', value: { cleanup: 'backoff' }, script: { cleanup: ['fail'] }, finishAdvance: 500, outcome: 'completed' },
  { name: 'rollingBack.attempting', value: { rollingBack: 'attempting' }, script: { freeze: ['fail'], rollback: ['hang'] }, inFlight: 'rollback', outcome: 'rolledBack' },
  { name: 'rollingBack.backoff', value: { rollingBack: 'backoff' }, script: { freeze: ['fail'], rollback: ['fail'] }, finishAdvance: 1_000, outcome: 'rolledBack' },
  { name: 'completed', value: 'completed', script: {}, outcome: 'completed' },
  { name: 'rolledBack', value: 'rolledBack', script: { transfer: ['fail'] }, outcome: 'rolledBack' },
  { name: 'failed', value: 'failed', script: { freeze: ['fail'], rollback: Array<Step>(4).fill('fail') }, advance: 7_000, outcome: 'failed' },
];

async function reach(state: RestingState) {
  const h = start({ script: state.script });
  await settle();
  if (state.advance) {
    for (const ms of [1_000, 2_000, 4_000]) {
      h.clock.increment(ms);
      await settle();
    }
  }
  expect(h.actor.getSnapshot().value).toEqual(state.value);
  return h;
}

function restore(persisted: unknown, script: Script = {}) {
  const clock = new SimulatedClock();
  clock.set(2_000_000);
  const f = fakes(script, clock);
  const machine = migrationMachine.provide({ actors: migrationActors(f.fns) });
  const actor = restoreMigrationActor(machine, persisted, { clock });
  const emitted: MigrationEmitted[] = [];
  actor.on('*', (e) => emitted.push(checkOnWire(e)));
  actor.start();
  return { actor, clock, calls: f.calls, emitted };
}

describe('migration machine: persistence and rehydration', () => {
  it.each(RESTING)('from $name: the persisted snapshot is JSON and a new actor runs it to $outcome', async (state) => {
    const h = await reach(state);
    const persisted = h.actor.getPersistedSnapshot();
    const json = JSON.stringify(persisted);
    expect(JSON.parse(json)).toEqual(persisted);
    const before = h.actor.getSnapshot().context;
    h.actor.stop();
    if (state.inFlight) expect(h.calls[state.inFlight].at(-1)?.signal.aborted).toBe(true);

    const r = restore(JSON.parse(json));
    await settle();
    if (state.finishAdvance) {
      r.clock.increment(state.finishAdvance);
      await settle();
    }
    expect(topState(r.actor.getSnapshot().value)).toBe(state.outcome);
    const out = r.actor.getSnapshot().output as MigrationResult;
    expect(out.outcome).toBe(state.outcome);
    expect(out.migrationId).toBe('mig-1');
    if (state.inFlight) {
      const first = r.calls[state.inFlight][0];
      const old = h.calls[state.inFlight].at(-1);
      expect(first?.input.idempotencyKey).toBe(old?.input.idempotencyKey);
      expect(first?.input.attempt).toBe((old?.input.attempt ?? 0) + 1);
    }
    if (state.outcome === 'completed') expect(r.calls.rollback).toHaveLength(0);
    // Nothing recorded before the restart is lost.
    const after = r.actor.getSnapshot().context;
    expect(after.rounds.slice(0, before.rounds.length)).toEqual(before.rounds);
    expect(after.freezeAt).toBe(before.freezeAt ?? after.freezeAt);
    if (before.committed) expect(after.committed).toBe(true);
  });

  it('a rollback that left a lost destination to itself says so, and the flag survives rehydration', async () => {
    const h = start({ script: { transfer: ['fail'], rollback: [{ output: { decision: 'aborted', destination: 'leftToItself' } }] } });
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(h.actor.getSnapshot().context.rollback.destinationLeftToItself).toBe(true);
    const r = restore(JSON.parse(JSON.stringify(h.actor.getPersistedSnapshot())));
    await settle();
    expect(r.actor.getSnapshot().context.rollback.destinationLeftToItself).toBe(true);
  });

  it('rehydrated in rollingBack.backoff, a retry that leaves the lost destination to itself ends rolledBack with the flag', async () => {
    const h = await reach(RESTING.find((x) => x.name === 'rollingBack.backoff')!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const r = restore(JSON.parse(json), { rollback: [{ output: { decision: 'aborted', destination: 'leftToItself' } }] });
    await settle();
    r.clock.increment(1_000);
    await settle();
    expect(topState(r.actor.getSnapshot().value)).toBe('rolledBack');
    expect(r.actor.getSnapshot().context.rollback).toMatchObject({ decision: 'aborted', destinationLeftToItself: true });
  });

  it('a rollback whose destination discarded its half leaves no flag', async () => {
    const h = start({ script: { transfer: ['fail'], rollback: [{ output: { decision: 'aborted', destination: 'discarded' } }] } });
    await settle();
    expect(top(h)).toBe('rolledBack');
    expect(h.actor.getSnapshot().context.rollback.destinationLeftToItself).toBeUndefined();
  });

  it('re-arms the phase timeout after rehydration', async () => {
    const h = await reach(RESTING[2]!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const r = restore(JSON.parse(json), { freeze: ['hang'] });
    await settle();
    expect(r.actor.getSnapshot().value).toBe('freeze');
    r.clock.increment(TIMEOUTS.freeze);
    await settle();
    expect(topState(r.actor.getSnapshot().value)).toBe('rolledBack');
    expect(r.actor.getSnapshot().context.error).toMatchObject({ code: ErrorCode.Timeout, phase: 'freeze' });
  });

  it('re-arms the rollback backoff and keeps counting rollback attempts', async () => {
    const h = await reach(RESTING[11]!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const r = restore(JSON.parse(json), { rollback: ['fail', 'ok'] });
    await settle();
    expect(r.calls.rollback).toHaveLength(0);
    r.clock.increment(1_000);
    await settle();
    expect(r.calls.rollback.map((c) => c.input.attempt)).toEqual([2]);
    r.clock.increment(1_999);
    await settle();
    expect(r.calls.rollback).toHaveLength(1);
    r.clock.increment(1);
    await settle();
    expect(topState(r.actor.getSnapshot().value)).toBe('rolledBack');
  });

  it('a rehydrated precopy continues with the same round number', async () => {
    const h = await reach(RESTING[1]!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const r = restore(JSON.parse(json));
    await settle();
    expect(r.calls.precopyRound.map((c) => [c.input.round, c.input.attempt, c.input.idempotencyKey])).toEqual([
      [2, 2, 'mig-1/precopy/2'],
      [3, 1, 'mig-1/precopy/3'],
    ]);
  });

  it('a rehydrated actor emits the re-entry of its phase', async () => {
    const h = await reach(RESTING[3]!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const r = restore(JSON.parse(json), { transfer: ['hang'] });
    await settle();
    expect(r.emitted.map((e) => ('phase' in e ? `${e.type}:${e.phase}` : e.type))).toEqual(['phase.exited:transfer', 'phase.entered:transfer', 'phase.attempt:transfer']);
    expect(r.emitted[2]).toMatchObject({ attempt: 2, at: 2_000_000 });
    // The phase keeps its first start time.
    expect(r.actor.getSnapshot().context.phases.transfer.startedAt).toBe(1_000_000);
  });

  it('a CANCEL after commit is still refused after rehydration', async () => {
    const h = await reach(RESTING[6]!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const r = restore(JSON.parse(json), { resume: ['hang', 'ok'] });
    r.actor.send({ type: 'CANCEL' });
    await settle();
    expect(r.actor.getSnapshot().context.refused).toHaveLength(1);
    r.clock.increment(TIMEOUTS.resume);
    await settle();
    r.clock.increment(1_000); // backoff for attempt 2 (the restart after rehydration was attempt 2)
    await settle();
    expect(topState(r.actor.getSnapshot().value)).toBe('completed');
  });

  it('xstate alone (createActor with a snapshot) would lose the phase timeout: why restoreMigrationActor exists', async () => {
    const h = await reach(RESTING[2]!);
    const json = JSON.stringify(h.actor.getPersistedSnapshot());
    h.actor.stop();
    const clock = new SimulatedClock();
    const f = fakes({ freeze: ['hang'] }, clock);
    const machine = migrationMachine.provide({ actors: migrationActors(f.fns) });
    // What restoreMigrationActor avoids: the plain xstate restore.
    const plain = createActor(machine, { clock, snapshot: JSON.parse(json), input: baseInput() });
    plain.start();
    await settle();
    expect(f.calls.freeze).toHaveLength(1); // xstate restarts the promise actor from its persisted input...
    expect(f.calls.freeze[0]?.input.attempt).toBe(1); // ...with the old attempt number
    clock.increment(TIMEOUTS.freeze * 10);
    await settle();
    expect(plain.getSnapshot().value).toBe('freeze'); // ...but the timeout is gone
    plain.stop();
  });

  it('refuses something that is not a persisted snapshot', () => {
    expect(() => restoreMigrationActor(migrationMachine, { foo: 1 })).toThrow(FerryError);
    expect(() => restoreMigrationActor(migrationMachine, null)).toThrow(/not a persisted migration snapshot/);
  });
});

// Contract types are usable by implementations (compile-time check).
const _contract: MigrationActorContracts['rollback']['output'] = { decision: 'aborted' };
