// One agent's part of each migration phase, by role: the source's steps (source-steps.ts) and the
// destination's (destination-steps.ts). Every step is idempotent by its key (a replay returns the
// first result) and refused once the migration was rolled back here (fenced), so a late or
// duplicated request can never undo a decision (step-runner.ts). The workload is frozen by the
// engine; a restarted agent can still thaw or end it from the pids on record.
import type { WorkloadNetwork } from '../net/workload.ts';
import type { Workloads } from '../workloads.ts';
import type { MethodRequest } from '../engine/memory/dirty/choose.ts';
import { NetworkHandoff } from '../net/handoff.ts';
import { MigrationRecords } from './records.ts';
import { StepRunner } from './step-runner.ts';
import { SourceSteps, type SourceEngine } from './source-steps.ts';
import { DestinationSteps, type TreeBuilder } from './destination-steps.ts';
import type { DataStreamSettings } from './stream-settings.ts';
import type { ProgressSink } from './progress.ts';

export type { RollbackStep } from './step-runner.ts';
export type { DataStreamSettings } from './stream-settings.ts';

export class MigrationSteps {
  readonly records: MigrationRecords;
  readonly source: SourceSteps;
  readonly destination: DestinationSteps;

  constructor(
    host: string,
    address: string,
    workloads: Workloads,
    stateDir: string,
    network?: WorkloadNetwork,
    /** Dirty tracking for live migration: auto (uffd-wp where it works, else hashing), or one forced. */
    tracking: MethodRequest = 'auto',
    /** This agent's identity and stream settings; null (no tls configured): it takes no part in migrations. */
    stream: DataStreamSettings | null = null,
    /**
     * What the steps drive below them: the engine and the tree builder (fakes in unit tests); and
     * where a round this agent sends reports its progress (agent/main.ts: NATS).
     */
    parts: { sourceEngine?: SourceEngine; treeBuilder?: TreeBuilder; progress?: ProgressSink } = {},
  ) {
    this.records = new MigrationRecords(stateDir);
    const run = new StepRunner(host, this.records);
    const handoff = new NetworkHandoff(network);
    this.source = new SourceSteps(run, workloads, handoff, tracking, stream, parts.sourceEngine, parts.progress ?? null);
    this.destination = new DestinationSteps(run, address, workloads, handoff, stream, parts.treeBuilder);
  }
}
