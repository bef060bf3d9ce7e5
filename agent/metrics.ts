// The agent's Prometheus metrics (docs/metrics.md), fed from the diagnostics channels the lower
// layers publish on (ferry:transfer, ferry:step, ferry:verify), and read from the workload
// registry at scrape time. Nothing here is threaded through the engine.
import diagnostics_channel from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { WorkloadState, type WorkloadInfo } from '../shared/workload.ts';
import { natsConnectedGauge, type StatusSource } from '../shared/metrics/nats.ts';

/** Seconds: a step of a small workload takes milliseconds, a large one's transfer minutes. */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const VERIFY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface AgentMetricsSources {
  /** The workloads this agent holds (agent/workloads.ts list()). */
  workloads: () => Pick<WorkloadInfo, 'state'>[];
  nc: StatusSource | null;
}

interface StepMessage {
  step: string;
  ms: number;
  ok: boolean;
}

/** A registry with every agent metric; `stop` unsubscribes from the channels (tests build several). */
export function agentMetrics(src: AgentMetricsSources): { registry: Registry; stop: () => void } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  if (src.nc) natsConnectedGauge(registry, src.nc);

  const streamBytes = new Counter({
    name: 'ferry_agent_stream_bytes_total',
    help: 'Bytes of migration data streams (frames, before TLS), by direction: sent by this agent as a source, received as a destination',
    labelNames: ['direction'],
    registers: [registry],
  });
  // Both directions exist from the start, so that rate() works from the first scrape.
  for (const direction of ['sent', 'received']) streamBytes.inc({ direction }, 0);
  const steps = new Histogram({
    name: 'ferry_agent_migration_step_duration_seconds',
    help: 'Migration steps this agent ran, by step (freeze: stop and collect the state; send: dump and stream; restore: rebuild and verify; precopy: one round; ...) and outcome',
    labelNames: ['step', 'outcome'],
    buckets: STEP_BUCKETS,
    registers: [registry],
  });
  const rounds = new Counter({
    name: 'ferry_agent_precopy_rounds_total',
    help: 'Pre-copy rounds this agent sent as the source of a live migration',
    registers: [registry],
  });
  const verify = new Histogram({
    name: 'ferry_agent_verify_duration_seconds',
    help: 'Verification of a restored tree against its image, by part: inside the downtime, or outside it (pages checked as they landed during pre-copy)',
    labelNames: ['part'],
    buckets: VERIFY_BUCKETS,
    registers: [registry],
  });
  new Gauge({
    name: 'ferry_agent_workloads',
    help: 'Workloads this agent holds, by state (running, frozen, migrating, exited)',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const state of WorkloadState.options) this.set({ state }, 0);
      for (const w of src.workloads()) this.inc({ state: w.state });
    },
  });

  const onTransfer = (m: unknown) => {
    const { kind, bytes } = m as { kind: string; bytes?: number };
    if ((kind === 'sent' || kind === 'received') && typeof bytes === 'number') streamBytes.inc({ direction: kind }, bytes);
  };
  const onStep = (m: unknown) => {
    const s = m as StepMessage;
    steps.observe({ step: s.step, outcome: s.ok ? 'ok' : 'error' }, s.ms / 1000);
    if (s.step === 'precopy' && s.ok) rounds.inc();
  };
  const onVerify = (m: unknown) => {
    const { kind, report } = m as { kind: string; report?: { insideMs: number; outsideMs: number } };
    if (kind !== 'verified' || !report) return;
    verify.observe({ part: 'inside_downtime' }, report.insideMs / 1000);
    verify.observe({ part: 'outside_downtime' }, report.outsideMs / 1000);
  };
  const subscriptions: [string, (m: unknown) => void][] = [
    ['ferry:transfer', onTransfer],
    ['ferry:step', onStep],
    ['ferry:verify', onVerify],
  ];
  for (const [name, fn] of subscriptions) diagnostics_channel.subscribe(name, fn);
  return { registry, stop: () => subscriptions.forEach(([name, fn]) => diagnostics_channel.unsubscribe(name, fn)) };
}
