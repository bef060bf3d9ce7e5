// The JSON every command prints with --json, as zod schemas: docs/schemas/ holds their JSON
// Schemas, generated from these (`npm run schemas`; a unit test checks the committed files).
import { z } from 'zod';
import { CordonReply, FleetEvent, FleetJob } from '../shared/fleet.ts';
import { MigrationView } from '../shared/migration.ts';
import { MigrationEvent } from '../shared/migration-events.ts';
import { DashboardLogin, ErrorWire, HostView } from '../shared/protocol.ts';
import { WorkloadInfo } from '../shared/workload.ts';
import { CheckpointReply, RestoreReply, WorkloadOperation } from '../shared/job-image.ts';
import { JobCheckpointReply, JobName, JobRestoreReply } from '../shared/job-group.ts';

export const Version = z.strictObject({ name: z.literal('ferry'), version: z.string(), node: z.string(), protocol: z.number().int(), imageFormat: z.number().int() });

/** File name (without .json) -> what it describes and its schema. */
export const CLI_OUTPUTS = {
  hosts: { commands: 'ferry hosts --json', schema: z.array(HostView) },
  workload: { commands: 'ferry run --json, ferry stop --json', schema: WorkloadInfo },
  workloads: { commands: 'ferry ps --json', schema: z.array(WorkloadInfo) },
  migration: { commands: 'ferry migrate --json (stdout), ferry status ID --json, ferry cancel ID --json, ferry watch ID --json of an ended migration', schema: MigrationView },
  migrations: { commands: 'ferry status --json, ferry history --json (migrations, and checkpoints and restores: those with `kind`)', schema: z.array(z.union([MigrationView, WorkloadOperation])) },
  checkpoint: { commands: 'ferry checkpoint NAME --json', schema: CheckpointReply },
  restore: { commands: 'ferry restore NAME --json', schema: RestoreReply },
  'job-checkpoint': { commands: 'ferry checkpoint --job JOB --json', schema: JobCheckpointReply },
  'job-restore': { commands: 'ferry restore --job JOB --json', schema: JobRestoreReply },
  'job-migration': { commands: 'ferry migrate --job JOB --json (stdout)', schema: z.strictObject({ job: JobName, migrations: z.array(MigrationView), notAttempted: z.array(z.string()) }) },
  'migration-event': { commands: 'ferry watch --json (one per line), ferry migrate --json (stderr, one per line)', schema: MigrationEvent },
  error: { commands: 'any command with --json that fails (stdout)', schema: z.strictObject({ error: ErrorWire }) },
  version: { commands: 'ferry version --json', schema: Version },
  cordon: { commands: 'ferry cordon --json, ferry uncordon --json', schema: CordonReply },
  'fleet-job': { commands: 'ferry drain --json (stdout), ferry rebalance --json (stdout), ferry drains ID --json', schema: FleetJob },
  'fleet-jobs': { commands: 'ferry drains --json', schema: z.array(FleetJob) },
  'dashboard-login': { commands: 'ferry dashboard --json', schema: DashboardLogin },
  'fleet-event': { commands: 'ferry drain --json and ferry rebalance --json (stderr, one per line)', schema: FleetEvent },
} as const;

export function jsonSchemaOf(name: keyof typeof CLI_OUTPUTS): Record<string, unknown> {
  const { commands, schema } = CLI_OUTPUTS[name];
  return { $id: `https://ferry.invalid/schemas/${name}.json`, title: `ferry: ${commands}`, ...z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) };
}

/** The file contents: stable key order and a trailing newline, so that the committed files diff cleanly. */
export const schemaFileText = (name: keyof typeof CLI_OUTPUTS): string => JSON.stringify(jsonSchemaOf(name), null, 2) + '\n';
