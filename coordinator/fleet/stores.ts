// The fleet's durable records, one bucket each: cordons (by host), placement policies (by
// workload) and drain/rebalance jobs (by id). Only coordinators write them (shared/permissions.ts).
import type { NatsConnection } from '@nats-io/transport-node';
import { CordonRecord, FleetJob, PlacementPolicy } from '../../shared/fleet.ts';
import { CheckpointRecord } from '../../shared/job-image.ts';
import { HostName, WorkloadName } from '../../shared/names.ts';
import { bucketOptions, buckets } from '../../shared/subjects.ts';
import type { RecordQuarantine } from '../quarantine.ts';
import { RecordBucket } from './bucket.ts';

export interface FleetStores {
  cordons: RecordBucket<typeof CordonRecord>;
  policies: RecordBucket<typeof PlacementPolicy>;
  jobs: RecordBucket<typeof FleetJob>;
}

const isJobId = (k: string) => FleetJob.shape.id.safeParse(k).success;

export async function openFleetStores(nc: NatsConnection, quarantine: RecordQuarantine, replicas: number): Promise<FleetStores> {
  const open = <S extends Parameters<typeof RecordBucket.open>[1]['schema']>(b: keyof typeof bucketOptions & keyof typeof buckets, schema: S, keyOk: (k: string) => boolean) =>
    RecordBucket.open(nc, { bucket: buckets[b], ...bucketOptions[b], replicas, schema, quarantine, keyOk });
  const [cordons, policies, jobs] = await Promise.all([
    open('cordons', CordonRecord, (k) => HostName.safeParse(k).success),
    open('policies', PlacementPolicy, (k) => WorkloadName.safeParse(k).success),
    open('fleet', FleetJob, isJobId),
  ]);
  return { cordons, policies, jobs };
}

/** Checkpointed workloads' records (coordinator/checkpoints.ts), by workload name. */
export function openCheckpointRecords(nc: NatsConnection, quarantine: RecordQuarantine, replicas: number): Promise<RecordBucket<typeof CheckpointRecord>> {
  return RecordBucket.open(nc, { bucket: buckets.checkpoints, ...bucketOptions.checkpoints, replicas, schema: CheckpointRecord, quarantine, keyOk: (k) => WorkloadName.safeParse(k).success });
}
