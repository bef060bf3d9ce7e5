// A randomised check of the safety invariant against a model of the two hosts and the decision key:
// "at no time may the workload run on both hosts, or on neither once the migration has ended"
// (except `failed`, which hands over to an operator and must never have the workload on the destination).
// Fake actors follow the contracts in coordinator/phases.ts (idempotent, CAS on the decision key,
// agents fenced after a rollback) and fail, hang, or lose their reply at random, before or after
// their effect; CANCEL and AGENT_LOST arrive at random.
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { createMigrationActor, migrationActors, migrationMachine, restoreMigrationActor, topState, type MigrationActorFns, type MigrationResult } from '../../coordinator/machine.ts';
import type { Phase, RoundStats } from '../../coordinator/phases.ts';

interface World {
  source: 'running' | 'frozen' | 'gone';
  destination: 'none' | 'stopped' | 'running';
  decision: 'undecided' | 'committed' | 'aborted';
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TIMEOUTS: Record<Phase, number> = { preflight: 100, precopy: 100, freeze: 100, transfer: 100, restore: 100, commit: 100, resume: 100, cleanup: 100 };

const stats = (round: number): RoundStats => ({
  round,
  pagesScanned: 100,
  pagesDirty: Math.max(0, 100 - round * 40),
  pagesSent: 100,
  bytesOnWire: 4096,
  compressionRatio: 1,
  durationMs: 1,
  dirtyRateBps: 1,
  bandwidthBps: 1e9,
  predictedDowntimeMs: 1,
});

type Fault = 'none' | 'failBefore' | 'failAfter' | 'hangBefore' | 'hangAfter';

function world(seed: number, faultRate: number) {
  const r = rng(seed);
  const w: World = { source: 'running', destination: 'none', decision: 'undecided' };
  const violations: string[] = [];
  const check = (where: string) => {
    if (w.source === 'running' && w.destination === 'running') violations.push(`both running after ${where}`);
  };
  const fault = (): Fault => {
    if (r() >= faultRate) return 'none';
    return (['failBefore', 'failAfter', 'hangBefore', 'hangAfter'] as const)[Math.floor(r() * 4)]!;
  };
  const hang = (signal: AbortSignal) =>
    new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new FerryError(ErrorCode.Cancelled, 'aborted'))));
  /** Run `effect` under a random fault. The effect itself may throw (fencing, CAS conflict). */
  async function step<T>(name: string, signal: AbortSignal, effect: () => T): Promise<T> {
    const f = fault();
    if (f === 'failBefore') throw new FerryError(ErrorCode.Unavailable, `${name}: no reply`);
    if (f === 'hangBefore') return hang(signal);
    const out = effect();
    check(name);
    if (f === 'failAfter') throw new FerryError(ErrorCode.Unavailable, `${name}: reply lost`);
    if (f === 'hangAfter') return hang(signal);
    return out;
  }
  const fenced = (what: string) => {
    if (w.decision === 'aborted') throw new FerryError(ErrorCode.Conflict, `${what}: migration aborted (fenced)`);
  };
  const fns: MigrationActorFns = {
    preflight: ({ signal }) =>
      step('preflight', signal, () => ({ workloadSupported: { ok: true }, destinationCompatible: { ok: true }, destinationHasMemory: { ok: true }, workloadBytes: 1 })),
    precopyRound: ({ input, signal }) => step('precopyRound', signal, () => (fenced('precopy'), stats(input.round))),
    freeze: ({ signal }) =>
      step('freeze', signal, () => {
        fenced('freeze');
        if (w.source === 'running') w.source = 'frozen';
        return {};
      }),
    transfer: ({ signal }) => step('transfer', signal, () => (fenced('transfer'), { bytesTransferred: 1 })),
    restore: ({ signal }) =>
      step('restore', signal, () => {
        fenced('restore');
        if (w.destination === 'none') w.destination = 'stopped';
        return {};
      }),
    recordCommit: ({ signal }) =>
      step('recordCommit', signal, () => {
        if (w.decision === 'aborted') throw new FerryError(ErrorCode.Conflict, 'decision is aborted');
        w.decision = 'committed';
        return { revision: 1, committedAt: 1 };
      }),
    resume: ({ signal }) =>
      step('resume', signal, () => {
        if (w.decision !== 'committed') violations.push('resume without a committed decision');
        if (w.source === 'running') violations.push('resume while the source runs');
        if (w.destination === 'none') violations.push('resume with nothing restored');
        w.destination = 'running';
        return {};
      }),
    cleanup: ({ signal }) =>
      step('cleanup', signal, () => {
        if (w.destination !== 'running') violations.push('cleanup before the destination runs');
        w.source = 'gone';
      }),
    rollback: ({ signal }) =>
      step('rollback', signal, () => {
        if (w.decision === 'committed') return { decision: 'committed' as const, revision: 1, committedAt: 1 };
        w.decision = 'aborted';
        w.destination = 'none';
        if (w.source === 'frozen') w.source = 'running';
        return { decision: 'aborted' as const };
      }),
  };
  return { w, r, fns, violations, check };
}

const settle = async () => {
  for (let i = 0; i < 3; i++) await new Promise((res) => setImmediate(res));
};

async function run(seed: number, opts: { faultRate: number; eventRate: number; restartRate: number }) {
  const sim = world(seed, opts.faultRate);
  const machine = migrationMachine.provide({ actors: migrationActors(sim.fns) });
  const input = {
    migrationId: `m-${seed}`,
    source: 'a',
    destination: 'b',
    workload: { name: 'w' },
    timeouts: TIMEOUTS,
    precopy: sim.r() < 0.5 ? (false as const) : { downtimeBudgetMs: 10, fixedCosts: { freezeMs: 1, dumpMs: 1, resumeMs: 1 }, maxRounds: 3 },
    rollback: { initialMs: 10, maxMs: 40, factor: 2, timeoutMs: 100, maxAttempts: 4 },
    rollForward: { initialMs: 10, maxMs: 40, factor: 2 },
  };
  let clock = new SimulatedClock();
  let actor = createMigrationActor(machine, input, { clock });
  actor.start();
  for (let i = 0; i < 500 && actor.getSnapshot().status === 'active'; i++) {
    await settle();
    sim.check('settle');
    const x = sim.r();
    if (x < opts.eventRate) {
      actor.send(sim.r() < 0.5 ? { type: 'CANCEL' } : { type: 'AGENT_LOST', role: sim.r() < 0.5 ? 'source' : 'destination' });
    } else if (x < opts.eventRate + opts.restartRate) {
      // coordinator restart: persist, drop the actor, rehydrate on a fresh clock
      const json = JSON.stringify(actor.getPersistedSnapshot());
      actor.stop();
      clock = new SimulatedClock();
      actor = restoreMigrationActor(machine, JSON.parse(json), { clock });
      actor.start();
    } else {
      clock.increment(100);
    }
  }
  await settle();
  const snap = actor.getSnapshot();
  expect(snap.status, `seed ${seed} did not finish: ${JSON.stringify(snap.value)}`).toBe('done');
  return { ...sim, outcome: (snap.output as MigrationResult).outcome, state: topState(snap.value) };
}

describe('migration machine: safety under random faults', () => {
  it('never runs the workload on both hosts, and ends with it on exactly one (or hands over to an operator)', async () => {
    const outcomes: Record<string, number> = {};
    for (let seed = 1; seed <= 400; seed++) {
      const res = await run(seed, { faultRate: [0.1, 0.3, 0.6][seed % 3] ?? 0.3, eventRate: 0.05, restartRate: 0.05 });
      expect(res.violations, `seed ${seed}`).toEqual([]);
      outcomes[res.outcome] = (outcomes[res.outcome] ?? 0) + 1;
      const { w } = res;
      if (res.outcome === 'completed') expect(w, `seed ${seed}`).toEqual({ source: 'gone', destination: 'running', decision: 'committed' });
      if (res.outcome === 'rolledBack') expect(w, `seed ${seed}`).toEqual({ source: 'running', destination: 'none', decision: 'aborted' });
      if (res.outcome === 'failed') {
        expect(w.destination, `seed ${seed}`).not.toBe('running');
        expect(w.source, `seed ${seed}`).not.toBe('gone');
      }
    }
    // the random walk reaches every outcome
    expect(Object.keys(outcomes).sort()).toEqual(['completed', 'failed', 'rolledBack']);
  });

  it('without faults every migration completes', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const res = await run(seed, { faultRate: 0, eventRate: 0, restartRate: 0 });
      expect(res.outcome).toBe('completed');
      expect(res.w).toEqual({ source: 'gone', destination: 'running', decision: 'committed' });
    }
  });
});
