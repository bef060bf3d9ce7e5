// The coordinator's NATS micro service: what the CLI and schedulers call.
import { Svcm } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { coordinatorApi } from '../shared/protocol.ts';
import { answer } from '../shared/rpc.ts';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { serviceNames, subjects } from '../shared/subjects.ts';
import type { CoordinatorDashboard } from './dashboard/dashboard.ts';
import type { Fleet } from './fleet/fleet.ts';
import type { MigrationManager } from './migrations.ts';
import type { WorkloadDirectory } from './workloads.ts';
import type { CheckpointDirectory } from './checkpoints.ts';
import type { JobCheckpoints } from './job-checkpoints.ts';

export const COORDINATOR_VERSION = '0.1.0';

export interface CoordinatorParts {
  workloads: WorkloadDirectory;
  migrations: MigrationManager;
  fleet: Fleet;
  checkpoints: CheckpointDirectory;
  jobs: JobCheckpoints;
  dashboard?: CoordinatorDashboard | null;
}

/** A workload that runs nowhere but is checkpointed is forgotten by `stop` (its images stay). */
async function stopOrForget(fleet: Fleet, checkpoints: CheckpointDirectory, name: string) {
  try {
    return await fleet.stop(name);
  } catch (err) {
    if (FerryError.from(err).code !== ErrorCode.NotFound) throw err;
    const forgotten = await checkpoints.forget(name);
    if (!forgotten) throw err;
    return forgotten;
  }
}

export async function startCoordinatorService(nc: NatsConnection, { workloads, migrations, fleet, checkpoints, jobs, dashboard = null }: CoordinatorParts) {
  const service = await new Svcm(nc).add({ name: serviceNames.coordinator, version: COORDINATOR_VERSION, description: 'ferry coordinator' });
  const group = service.addGroup(subjects.coordinatorGroup);
  group.addEndpoint('hosts', { handler: (_err, msg) => void answer(coordinatorApi.hosts, msg, () => fleet.hosts()) });
  group.addEndpoint('run', { handler: (_err, msg) => void answer(coordinatorApi.run, msg, (req) => fleet.run(req)) });
  group.addEndpoint('ps', { handler: (_err, msg) => void answer(coordinatorApi.ps, msg, async () => jobs.annotate(await checkpoints.listing(await workloads.list()))) });
  group.addEndpoint('stop', { handler: (_err, msg) => void answer(coordinatorApi.stop, msg, (req) => stopOrForget(fleet, checkpoints, req.name)) });
  group.addEndpoint('update', { handler: (_err, msg) => void answer(coordinatorApi.update, msg, (req) => workloads.update(req.name, req.limits)) });
  group.addEndpoint('migrate', { handler: (_err, msg) => void answer(coordinatorApi.migrate, msg, (req) => migrations.start(req)) });
  group.addEndpoint('status', {
    handler: (_err, msg) => void answer(coordinatorApi.status, msg, async (req) => (req.id ? [await migrations.view(req.id)] : migrations.list(req.all))),
  });
  group.addEndpoint('cancel', { handler: (_err, msg) => void answer(coordinatorApi.cancel, msg, (req) => migrations.cancel(req.id)) });
  group.addEndpoint('cordon', { handler: (_err, msg) => void answer(coordinatorApi.cordon, msg, (req) => fleet.cordons.cordon(req.host, req.reason)) });
  group.addEndpoint('uncordon', { handler: (_err, msg) => void answer(coordinatorApi.uncordon, msg, (req) => fleet.cordons.uncordon(req.host)) });
  group.addEndpoint('drain', { handler: (_err, msg) => void answer(coordinatorApi.drain, msg, (req) => fleet.drain(req)) });
  group.addEndpoint('rebalance', { handler: (_err, msg) => void answer(coordinatorApi.rebalance, msg, (req) => fleet.rebalance(req)) });
  group.addEndpoint('fleet', {
    handler: (_err, msg) => void answer(coordinatorApi.fleet, msg, async (req) => (req.id ? [await fleet.executor.view(req.id)] : fleet.executor.list())),
  });
  group.addEndpoint('checkpoint', { handler: (_err, msg) => void answer(coordinatorApi.checkpoint, msg, (req) => checkpoints.checkpoint(req)) });
  group.addEndpoint('restore', { handler: (_err, msg) => void answer(coordinatorApi.restore, msg, (req) => checkpoints.restore(req)) });
  group.addEndpoint('checkpoint-job', { handler: (_err, msg) => void answer(coordinatorApi['checkpoint-job'], msg, (req) => jobs.checkpoint(req)) });
  group.addEndpoint('restore-job', { handler: (_err, msg) => void answer(coordinatorApi['restore-job'], msg, (req) => jobs.restore(req)) });
  group.addEndpoint('operations', { handler: (_err, msg) => void answer(coordinatorApi.operations, msg, (req) => checkpoints.operations(req.all)) });
  group.addEndpoint('dashboard', {
    handler: (_err, msg) =>
      void answer(coordinatorApi.dashboard, msg, () => {
        if (!dashboard) throw new FerryError(ErrorCode.BadConfig, 'the leading coordinator serves no dashboard: its config has no `dashboard: { listen: "HOST:PORT" }`, or it could not start it (its log says why; docs/dashboard.md)');
        return dashboard.login();
      }),
  });
  return service;
}
