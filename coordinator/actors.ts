// The real phase actors of the migration statechart: each asks one or both agents to do its
// step over NATS (idempotent by key), or writes the commit decision to KV. The contracts are
// coordinator/phases.ts; the machine decides what happens on success, failure and timeout.
import { ErrorCode, FerryError, type ErrorWire } from '../shared/errors.ts';
import type { HostFacts } from '../shared/facts.ts';
import { withFaultPoints } from '../shared/fault.ts';
import type { HeldLock, StepBase } from '../shared/migration.ts';
import type { ResourceLimits, ResourceRequests } from '../shared/resources.ts';
import type { AgentClient } from './agents.ts';
import { assertCompatible, assertDataStreams, memoryNeeded } from './compatibility.ts';
import type { MigrationActorFns } from './machine.ts';
import type { Phase, PhaseInputBase, PreflightCheck } from './phases.ts';
import { untilKvAnswers, type MigrationStore } from './store.ts';

export interface ActorDeps {
  agents: AgentClient;
  store: MigrationStore;
  facts: (host: string) => HostFacts | undefined;
  /** Whether a host's agent heartbeats (the cluster view). */
  alive: (host: string) => boolean;
  now: () => number;
}

type StepSource = Pick<PhaseInputBase<Phase | 'rollback'>, 'migrationId' | 'idempotencyKey' | 'attempt' | 'workload' | 'verify' | 'bandwidthBps' | 'mode' | 'postcopyBackup'>;

/** The agent request of one phase attempt, addressed to the agent whose peer is `peer`. */
const step = (i: StepSource, peer: string): StepBase => ({
  migrationId: i.migrationId,
  idempotencyKey: i.idempotencyKey,
  attempt: i.attempt,
  workload: i.workload.name,
  peer,
  ...(i.verify === false ? { verify: false } : {}),
  ...(i.bandwidthBps ? { bandwidthBps: i.bandwidthBps } : {}),
  ...(i.mode ? { mode: i.mode } : {}),
  ...(i.postcopyBackup ? { postcopyBackup: i.postcopyBackup } : {}),
});

/** What the source's preflight tells the destination's. */
type Admission = { limits: ResourceLimits; requests: ResourceRequests; locks: HeldLock[] };

const check = (fn: () => void): PreflightCheck => {
  try {
    fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: FerryError.from(err).toWire() as ErrorWire };
  }
};

export function migrationActorFns(d: ActorDeps): MigrationActorFns {
  const factsOf = (host: string) => {
    const f = d.facts(host);
    if (!f) throw new FerryError(ErrorCode.Unavailable, `no facts known for host ${host}`);
    return f;
  };
  const fns: MigrationActorFns = {
    async preflight({ input, signal }) {
      const src = factsOf(input.source);
      const dst = factsOf(input.destination);
      let workloadBytes = 0;
      let resources: Admission | null = null;
      const workloadSupported = await d.agents.call(input.source, 'mig.preflight', step(input, input.destination), { signal }).then(
        (r) => {
          workloadBytes = r.workloadBytes;
          resources = { limits: r.limits, requests: r.requests, locks: r.locks };
          return { ok: true } as PreflightCheck;
        },
        (err: unknown) => ({ ok: false, error: FerryError.from(err).toWire() as ErrorWire }),
      );
      // The destination checks its own controllers and its other workloads' requests, and that it
      // sees none of the tree's file locks held (shared storage), and makes the workload's cgroup
      // with its limits before any process of it exists there.
      const destinationHonoursLimits: PreflightCheck = resources
        ? await d.agents.call(input.destination, 'mig.admit', { ...step(input, input.source), ...(resources as Admission) }, { signal }).then(
            () => ({ ok: true }),
            (err: unknown) => ({ ok: false, error: FerryError.from(err).toWire() as ErrorWire }),
          )
        : { ok: true };
      return {
        workloadSupported,
        destinationHonoursLimits,
        destinationCompatible: check(() => {
          assertDataStreams(src, dst);
          assertCompatible(src, dst);
        }),
        destinationHasMemory: check(() => {
          const need = memoryNeeded(workloadBytes);
          if (dst.memory.availableBytes < need)
            throw new FerryError(ErrorCode.Incompatible, `${dst.name} has ${dst.memory.availableBytes} bytes available, the workload needs about ${need}`);
        }),
        workloadBytes,
      };
    },

    async precopyRound({ input, signal }) {
      // Round 1 opens the migration's data stream at the destination; later rounds and the final
      // transfer reuse it.
      const endpoint = input.round === 1 ? (await d.agents.call(input.destination, 'mig.receive', step(input, input.source), { signal })).endpoint : undefined;
      const req = { ...step(input, input.destination), round: input.round, throttle: input.throttle, ...(endpoint ? { endpoint } : {}) };
      return d.agents.call(input.source, 'mig.precopy', req, { signal });
    },

    async freeze({ input, signal }) {
      const r = await d.agents.call(input.source, 'mig.freeze', { ...step(input, input.destination), ...(input.postcopy ? { postcopy: true } : {}) }, { signal });
      return { tasks: r.tasks };
    },

    async transfer({ input, signal }) {
      // After pre-copy rounds only the last delta and the state travel, over the open stream.
      const endpoint = input.precopyRounds > 0 ? undefined : (await d.agents.call(input.destination, 'mig.receive', step(input, input.source), { signal })).endpoint;
      const r = await d.agents.call(input.source, 'mig.send', { ...step(input, input.destination), ...(endpoint ? { endpoint } : {}) }, { signal });
      return { bytesTransferred: r.bytesTransferred, bytesOnWire: r.bytesOnWire };
    },

    async restore({ input, signal }) {
      return d.agents.call(input.destination, 'mig.restore', step(input, input.source), { signal });
    },

    async recordCommit({ input, signal }) {
      // KV may fail for a moment (a NATS node lost, its streams electing new leaders): the decision
      // is asked for again until the phase's timeout. Rolling back would need KV just as much.
      const dcs = await untilKvAnswers(() => d.store.decide(input.migrationId, 'committed', d.now()), signal);
      if (dcs.decision !== 'committed') throw new FerryError(ErrorCode.Conflict, `migration ${input.migrationId} was already aborted`);
      return { revision: dcs.revision, committedAt: dcs.at };
    },

    async resume({ input, signal }) {
      // Second line of defence: the destination runs the workload only on a recorded commit.
      const dcs = await d.store.decision(input.migrationId);
      if (dcs?.decision !== 'committed') throw new FerryError(ErrorCode.Internal, `refusing to resume ${input.migrationId}: no commit recorded`);
      return d.agents.call(input.destination, 'mig.resume', step(input, input.source), { signal });
    },

    async cleanup({ input, signal }) {
      // After a post-copy switchover the destination says first whether every page arrived: it is
      // the one that knows (the source may be gone, its pages taken from a backup).
      const postcopy = input.postcopy ? await d.agents.call(input.destination, 'mig.postcopy', step(input, input.source), { signal }) : null;
      await d.agents.call(input.source, 'mig.cleanup', step(input, input.destination), { signal });
      return postcopy ? { postcopy } : undefined;
    },

    async rollback({ input, signal }) {
      const dcs = await d.store.decide(input.migrationId, 'aborted', d.now());
      if (dcs.decision === 'committed') return { decision: 'committed', revision: dcs.revision, committedAt: dcs.at };
      // The source first: its workload must run again. The destination's copy is stopped and can
      // never be resumed now that the decision says aborted, so discarding it may wait for a retry.
      await d.agents.call(input.source, 'mig.thaw', step(input, input.destination), { signal });
      try {
        await d.agents.call(input.destination, 'mig.discard', step(input, input.source), { signal });
      } catch (err) {
        // A lost destination is not waited for: the decision says aborted, and the agent, when it
        // returns, discards its half on its own once it reads that (agent/migration/reconcile.ts).
        if (d.alive(input.destination) || signal.aborted) throw err;
        return { decision: 'aborted', destination: 'leftToItself' };
      }
      return { decision: 'aborted', destination: 'discarded' };
    },
  };
  // Each actor can be made to crash its coordinator before or after its work (shared/fault.ts).
  const entries = Object.entries(fns) as [string, (a: unknown) => unknown][];
  return Object.fromEntries(entries.map(([name, fn]) => [name, withFaultPoints(`coordinator:${name}`, fn)])) as unknown as MigrationActorFns;
}
