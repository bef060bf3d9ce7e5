// The agent's NATS micro service: one endpoint per operation, each validated by shared/rpc.
import diagnostics_channel from 'node:diagnostics_channel';
import { Svcm } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { agentApi } from '../shared/protocol.ts';
import { FerryError } from '../shared/errors.ts';
import { withFaultPoints } from '../shared/fault.ts';
import { answer } from '../shared/rpc.ts';
import { serviceNames, subjects } from '../shared/subjects.ts';
import { AGENT_VERSION, type FactsSource } from './facts.ts';
import type { Workloads } from './workloads.ts';
import type { MigrationSteps } from './migration/steps.ts';
import type { WorkloadImages } from './jobs/workload-images.ts';
import { readJobManifest, writeJobManifest } from './jobs/job-manifest.ts';

/** Every migration step this agent ran: { step, ms, ok, code } (agent/metrics.ts times them). */
const stepChannel = diagnostics_channel.channel('ferry:step');

/** A migration step's handler: its fault points (shared/fault.ts) around it, its duration published. */
function step<A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R> | R): (...args: A) => Promise<R> {
  const run = withFaultPoints(`agent:${name}`, fn);
  return async (...args: A) => {
    const t0 = performance.now();
    try {
      const out = await run(...args);
      if (stepChannel.hasSubscribers) stepChannel.publish({ step: name, ms: performance.now() - t0, ok: true });
      return out;
    } catch (err) {
      if (stepChannel.hasSubscribers) stepChannel.publish({ step: name, ms: performance.now() - t0, ok: false, code: FerryError.from(err).code });
      throw err;
    }
  };
}

export async function startAgentService(nc: NatsConnection, host: string, facts: FactsSource, workloads: Workloads, steps: MigrationSteps, images: WorkloadImages) {
  const started = Date.now();
  const service = await new Svcm(nc).add({
    name: serviceNames.agent,
    version: AGENT_VERSION,
    description: `ferry agent on ${host}`,
    metadata: { host },
  });
  // No queue group: every endpoint subject names one host, and exactly one agent serves it.
  const group = service.addGroup(subjects.agentGroup(host), '');
  group.addEndpoint('facts', { handler: (_err, msg) => void answer(agentApi.facts, msg, () => facts.current()) });
  group.addEndpoint('run', { handler: (_err, msg) => void answer(agentApi.run, msg, (req) => workloads.run(req)) });
  group.addEndpoint('workloads', { handler: (_err, msg) => void answer(agentApi.workloads, msg, () => workloads.listReaped()) });
  group.addEndpoint('stop', { handler: (_err, msg) => void answer(agentApi.stop, msg, (req) => workloads.stop(req.name)) });
  group.addEndpoint('update', { handler: (_err, msg) => void answer(agentApi.update, msg, (req) => workloads.update(req.name, req.limits)) });
  // Migration steps: one endpoint per phase step, answered by agent/migration/source-steps.ts and destination-steps.ts.
  const mig = group.addGroup('mig');
  mig.addEndpoint('preflight', { handler: (_e, msg) => void answer(agentApi['mig.preflight'], msg, step('preflight', (r) => steps.source.preflight(r))) });
  mig.addEndpoint('admit', { handler: (_e, msg) => void answer(agentApi['mig.admit'], msg, step('admit', (r) => steps.destination.admit(r))) });
  mig.addEndpoint('freeze', { handler: (_e, msg) => void answer(agentApi['mig.freeze'], msg, step('freeze', (r) => steps.source.freeze(r))) });
  mig.addEndpoint('receive', { handler: (_e, msg) => void answer(agentApi['mig.receive'], msg, step('receive', (r) => steps.destination.receive(r))) });
  mig.addEndpoint('precopy', { handler: (_e, msg) => void answer(agentApi['mig.precopy'], msg, step('precopy', (r) => steps.source.precopy(r))) });
  mig.addEndpoint('send', { handler: (_e, msg) => void answer(agentApi['mig.send'], msg, step('send', (r) => steps.source.send(r))) });
  mig.addEndpoint('restore', { handler: (_e, msg) => void answer(agentApi['mig.restore'], msg, step('restore', (r) => steps.destination.restore(r))) });
  mig.addEndpoint('resume', { handler: (_e, msg) => void answer(agentApi['mig.resume'], msg, step('resume', (r) => steps.destination.resume(r))) });
  mig.addEndpoint('cleanup', { handler: (_e, msg) => void answer(agentApi['mig.cleanup'], msg, step('cleanup', (r) => steps.source.cleanup(r))) });
  mig.addEndpoint('postcopy', { handler: (_e, msg) => void answer(agentApi['mig.postcopy'], msg, step('postcopy', (r) => steps.destination.postcopy(r))) });
  mig.addEndpoint('discard', { handler: (_e, msg) => void answer(agentApi['mig.discard'], msg, step('discard', (r) => steps.destination.discard(r))) });
  mig.addEndpoint('thaw', { handler: (_e, msg) => void answer(agentApi['mig.thaw'], msg, step('thaw', (r) => steps.source.thaw(r))) });
  // Workload checkpoints on shared storage (agent/jobs/).
  const job = group.addGroup('job');
  job.addEndpoint('checkpoint', { handler: (_e, msg) => void answer(agentApi['job.checkpoint'], msg, step('job-checkpoint', (r) => images.checkpoint(r))) });
  job.addEndpoint('restore', { handler: (_e, msg) => void answer(agentApi['job.restore'], msg, step('job-restore', (r) => images.restore(r))) });
  job.addEndpoint('member', { handler: (_e, msg) => void answer(agentApi['job.member'], msg, step('job-member', (r) => images.memberStep(r))) });
  job.addEndpoint('manifest-write', { handler: (_e, msg) => void answer(agentApi['job.manifest-write'], msg, (r) => ({ path: writeJobManifest(r.images, r.manifest) })) });
  job.addEndpoint('manifest-read', { handler: (_e, msg) => void answer(agentApi['job.manifest-read'], msg, (r) => readJobManifest(r.images)) });
  group.addEndpoint('ping', {
    handler: (_err, msg) => void answer(agentApi.ping, msg, () => ({ host, pid: process.pid, uptimeMs: Date.now() - started })),
  });
  return service;
}
