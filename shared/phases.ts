// The phases of a migration: one vocabulary for the coordinator, the records, the events and the
// CLI, and the one table that says which agent steps (`mig.*`) each phase calls on which side.
import { z } from 'zod';

/** In order. `precopy` is a loop of rounds (coordinator/convergence.ts). */
export const PHASES = ['preflight', 'precopy', 'freeze', 'transfer', 'restore', 'commit', 'resume', 'cleanup'] as const;
export const PhaseName = z.enum(PHASES);
export type Phase = z.infer<typeof PhaseName>;

/** A phase, or the rollback that undoes the phases before the commit. */
export const PhaseOrRollback = z.union([PhaseName, z.literal('rollback')]);
export type PhaseOrRollback = z.infer<typeof PhaseOrRollback>;

/** How a migration ended. */
export const Outcome = z.enum(['completed', 'rolledBack', 'failed']);
export type Outcome = z.infer<typeof Outcome>;
/** Which side of a migration an agent is on. */
export const Role = z.enum(['source', 'destination']);
export type Role = z.infer<typeof Role>;
export const PhaseRecord = z.strictObject({
  /** Actor runs started (retries and restarts after rehydration included). */
  attempts: z.number().int().nonnegative(),
  startedAt: z.number().finite().nullable(),
  endedAt: z.number().finite().nullable(),
});
export type PhaseRecord = z.infer<typeof PhaseRecord>;

/** Phases before the commit point: any failure there rolls back. */
export const PRE_COMMIT_PHASES = ['preflight', 'precopy', 'freeze', 'transfer', 'restore', 'commit'] as const satisfies readonly Phase[];
export type PreCommitPhase = (typeof PRE_COMMIT_PHASES)[number];
/** Phases after the commit point: failures there are retried, never rolled back. */
export type PostCommitPhase = Exclude<Phase, PreCommitPhase>;

/** The agents' steps, as their endpoints are named (shared/protocol.ts agentApi). */
export type AgentStep = 'mig.preflight' | 'mig.admit' | 'mig.precopy' | 'mig.receive' | 'mig.freeze' | 'mig.send' | 'mig.restore' | 'mig.resume' | 'mig.cleanup' | 'mig.thaw' | 'mig.discard' | 'mig.postcopy';

/**
 * Which agent steps each coordinator phase calls (coordinator/actors.ts), on which side: where
 * the names differ across the boundary (transfer is the destination's receive and the source's
 * send; rollback is thaw and discard), this table is the translation. The commit is the
 * coordinator's own decision in KV and calls no agent.
 */
export const AGENT_STEPS = {
  preflight: { source: ['mig.preflight'], destination: ['mig.admit'] },
  // Round 1 opens the destination's end of the data stream (receive); every round is the source's.
  precopy: { source: ['mig.precopy'], destination: ['mig.receive'] },
  freeze: { source: ['mig.freeze'], destination: [] },
  // After pre-copy rounds the stream is open already: the destination's receive is not asked again.
  transfer: { source: ['mig.send'], destination: ['mig.receive'] },
  restore: { source: [], destination: ['mig.restore'] },
  commit: { source: [], destination: [] },
  resume: { source: [], destination: ['mig.resume'] },
  // After a post-copy switchover the destination says first whether every page arrived.
  cleanup: { source: ['mig.cleanup'], destination: ['mig.postcopy'] },
  rollback: { source: ['mig.thaw'], destination: ['mig.discard'] },
} as const satisfies Record<PhaseOrRollback, { source: readonly AgentStep[]; destination: readonly AgentStep[] }>;
