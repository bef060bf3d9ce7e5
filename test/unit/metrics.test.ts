// The metrics endpoint (shared/metrics/server.ts) and what feeds the daemons' metrics: a real
// HTTP server and real fetches; the agent's stream bytes from a real data connection over TCP,
// the coordinator's migration figures from the events the manager publishes.
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Counter, Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { agentMetrics } from '../../agent/metrics.ts';
import { DataConnection } from '../../agent/transfer/stream.ts';
import { coordinatorMetrics } from '../../coordinator/metrics.ts';
import { migrationChannel } from '../../coordinator/migrations.ts';
import { ErrorCode } from '../../shared/errors.ts';
import type { HostView } from '../../shared/protocol.ts';
import { bearerMatches, parseListen, readScrapeToken, startMetricsServer } from '../../shared/metrics/server.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TOKEN = 'a'.repeat(20) + 'b'.repeat(20);
const tokenFile = (name: string, text: string, mode = 0o600) => {
  const f = path.join(dir, name);
  writeFileSync(f, text, { mode });
  return f;
};

/** The value of one sample in the registry's text, or undefined when the series is absent. */
async function sample(registry: Registry, series: string): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics endpoint', () => {
  it('answers GET /metrics to the token alone: 401 without it or with another, 404 and 405 for anything else', async () => {
    const registry = new Registry();
    new Counter({ name: 'ferry_test_total', help: 'a test counter', registers: [registry] }).inc(3);
    const server = await startMetricsServer(registry, { listen: '127.0.0.1:0', tokenFile: tokenFile('ok.token', `${TOKEN}\n`) });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const get = (headers: Record<string, string> = {}, url = server.url, method = 'GET') => fetch(url, { method, headers });
      const none = await get();
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toContain('Bearer');
      expect(await none.text()).not.toContain('ferry_test_total');
      expect((await get({ authorization: `Bearer ${TOKEN}x` })).status).toBe(401);
      expect((await get({ authorization: `Bearer ${TOKEN.slice(1)}` })).status).toBe(401);
      expect((await get({ authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` })).status).toBe(401);
      // Unauthenticated requests learn nothing about paths either.
      expect((await get({}, server.url.replace('/metrics', '/other'))).status).toBe(401);
      const ok = await get({ authorization: `Bearer ${TOKEN}` });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('content-type')).toContain('text/plain');
      expect(await ok.text()).toContain('ferry_test_total 3');
      expect((await get({ authorization: `Bearer ${TOKEN}` }, server.url.replace('/metrics', '/'))).status).toBe(404);
      const post = await get({ authorization: `Bearer ${TOKEN}` }, server.url, 'POST');
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET');
    } finally {
      await server.close();
    }
  });

  it('refuses a token file others can read, a short token, and a bad listen address', async () => {
    expect(() => readScrapeToken(tokenFile('open.token', TOKEN, 0o644))).toThrow(/readable by others/);
    expect(() => readScrapeToken(tokenFile('short.token', 'secret'))).toThrow(/at least 32/);
    expect(() => readScrapeToken(path.join(dir, 'missing.token'))).toThrow(expect.objectContaining({ code: ErrorCode.BadConfig }));
    expect(readScrapeToken(tokenFile('spaced.token', `  ${TOKEN}\n`))).toBe(TOKEN);
    expect(parseListen('[::1]:9100')).toEqual({ host: '::1', port: 9100 });
    expect(() => parseListen('10.0.0.1')).toThrow(/ADDRESS:PORT/);
    expect(() => parseListen('10.0.0.1:70000')).toThrow(/ADDRESS:PORT/);
    await expect(startMetricsServer(new Registry(), { listen: '127.0.0.1:0', tokenFile: tokenFile('open2.token', TOKEN, 0o640) })).rejects.toThrow(/0600/);
  });

  it('compares the bearer token exactly', () => {
    expect(bearerMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(undefined, TOKEN)).toBe(false);
    expect(bearerMatches('Bearer ', TOKEN)).toBe(false);
    expect(bearerMatches(`Bearer ${TOKEN} extra`, TOKEN)).toBe(false);
  });
});

describe('agent metrics', () => {
  const stops: (() => void)[] = [];
  afterEach(() => stops.splice(0).forEach((s) => s()));

  it('counts the bytes a real data connection sends and receives, steps, rounds, verification and workloads', async () => {
    const m = agentMetrics({ workloads: () => [{ state: 'running' }, { state: 'running' }, { state: 'frozen' }], nc: null });
    stops.push(m.stop);
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection');
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const [sock] = (await accepted) as [net.Socket];
    const sender = new DataConnection(client);
    const receiver = new DataConnection(sock);
    await sender.send({ t: 'data' }, Buffer.alloc(10_000, 7));
    const frame = await receiver.next();
    expect(frame?.payload.length).toBe(10_000);
    // Sender and receiver are both in this process: each direction counts the whole frame.
    expect(await sample(m.registry, 'ferry_agent_stream_bytes_total{direction="sent"}')).toBe(sender.bytesSent);
    expect(await sample(m.registry, 'ferry_agent_stream_bytes_total{direction="received"}')).toBe(receiver.bytesReceived);
    expect(sender.bytesSent).toBeGreaterThan(10_000);
    sender.destroy();
    receiver.destroy();
    server.close();

    const step = diagnostics_channel.channel('ferry:step');
    step.publish({ step: 'precopy', ms: 40, ok: true });
    step.publish({ step: 'precopy', ms: 30, ok: true });
    step.publish({ step: 'precopy', ms: 5, ok: false, code: 'FERRY_UNAVAILABLE' });
    step.publish({ step: 'freeze', ms: 250, ok: true });
    diagnostics_channel.channel('ferry:verify').publish({ kind: 'verified', report: { insideMs: 12, outsideMs: 3 } });
    expect(await sample(m.registry, 'ferry_agent_precopy_rounds_total')).toBe(2);
    expect(await sample(m.registry, 'ferry_agent_migration_step_duration_seconds_count{step="precopy",outcome="ok"}')).toBe(2);
    expect(await sample(m.registry, 'ferry_agent_migration_step_duration_seconds_count{step="precopy",outcome="error"}')).toBe(1);
    expect(await sample(m.registry, 'ferry_agent_migration_step_duration_seconds_sum{step="freeze",outcome="ok"}')).toBeCloseTo(0.25);
    expect(await sample(m.registry, 'ferry_agent_verify_duration_seconds_sum{part="inside_downtime"}')).toBeCloseTo(0.012);
    expect(await sample(m.registry, 'ferry_agent_workloads{state="running"}')).toBe(2);
    expect(await sample(m.registry, 'ferry_agent_workloads{state="frozen"}')).toBe(1);
    expect(await sample(m.registry, 'ferry_agent_workloads{state="exited"}')).toBe(0);
    // prom-client's process metrics come along.
    expect(await sample(m.registry, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });
});

describe('coordinator metrics', () => {
  const stops: (() => void)[] = [];
  afterEach(() => stops.splice(0).forEach((s) => s()));

  const host = (name: string, alive: boolean, cordoned: boolean) =>
    ({ name, alive, cordoned, facts: { memory: { totalBytes: 8e9, availableBytes: 6e9 }, cpu: { count: 4 } } }) as unknown as HostView;

  const view = { downtimeMs: 180, predictedDowntimeMs: 60, bytesOnWire: 5_000_000, rounds: [{ bytesOnWire: 3_000_000 }, { bytesOnWire: 1_000_000 }], outcome: null };
  const event = (type: string, data: Record<string, unknown>) => ({ event: { migrationId: 'm-test1', type, at: 0, data, view }, request: { precopy: true, downtimeBudgetMs: 100 } });

  it('counts what the events of the migrations it drives say', async () => {
    let leading = true;
    const m = coordinatorMetrics({
      leading: () => leading,
      inFlight: () => 2,
      fleetJobs: () => [{ kind: 'drain', items: [{ state: 'moved' }, { state: 'pending' }, { state: 'pending' }] }] as never,
      hosts: () => [host('h1', true, false), host('h2', false, true)],
      workloadsOn: (h) => (h === 'h1' ? 3 : null),
      nc: null,
    });
    stops.push(m.stop);
    const r = m.registry;
    migrationChannel.publish(event('phase.exited', { phase: 'freeze', durationMs: 40 }));
    migrationChannel.publish(event('round', { stats: { bytesOnWire: 3_000_000 } }));
    migrationChannel.publish(event('round', { stats: { bytesOnWire: 1_000_000 } }));
    migrationChannel.publish(event('rollback.started', { fromPhase: 'restore', cause: { code: 'FERRY_VERIFY_MISMATCH' } }));
    migrationChannel.publish(event('migration.ended', { outcome: 'completed', result: { downtimeMs: 180, bytesOnWire: 5_000_000, rounds: 2 } }));

    expect(await sample(r, 'ferry_migrations_total{outcome="completed"}')).toBe(1);
    expect(await sample(r, 'ferry_migrations_total{outcome="rolledBack"}')).toBe(0);
    expect(await sample(r, 'ferry_migration_rollbacks_total{phase="restore",code="FERRY_VERIFY_MISMATCH"}')).toBe(1);
    expect(await sample(r, 'ferry_migration_phase_duration_seconds_sum{phase="freeze"}')).toBeCloseTo(0.04);
    expect(await sample(r, 'ferry_migration_downtime_seconds_count{kind="actual"}')).toBe(1);
    expect(await sample(r, 'ferry_migration_downtime_seconds_sum{kind="actual"}')).toBeCloseTo(0.18);
    expect(await sample(r, 'ferry_migration_downtime_seconds_sum{kind="predicted"}')).toBeCloseTo(0.06);
    expect(await sample(r, 'ferry_migration_downtime_over_budget_total')).toBe(1);
    // Rounds as they ended, the final transfer at the end: every byte once.
    expect(await sample(r, 'ferry_migration_sent_bytes_total')).toBe(5_000_000);
    expect(await sample(r, 'ferry_migration_precopy_rounds_total')).toBe(2);
    expect(await sample(r, 'ferry_migration_precopy_rounds_sum')).toBe(2);
    expect(await sample(r, 'ferry_migrations_in_progress')).toBe(2);
    expect(await sample(r, 'ferry_coordinator_is_leader')).toBe(1);
    expect(await sample(r, 'ferry_fleet_jobs_in_progress{kind="drain"}')).toBe(1);
    expect(await sample(r, 'ferry_fleet_jobs_in_progress{kind="rebalance"}')).toBe(0);
    expect(await sample(r, 'ferry_fleet_job_items{kind="drain",state="pending"}')).toBe(2);
    expect(await sample(r, 'ferry_host_alive{host="h1"}')).toBe(1);
    expect(await sample(r, 'ferry_host_alive{host="h2"}')).toBe(0);
    expect(await sample(r, 'ferry_host_cordoned{host="h2"}')).toBe(1);
    expect(await sample(r, 'ferry_host_cpus{host="h1"}')).toBe(4);
    expect(await sample(r, 'ferry_host_memory_bytes{host="h1"}')).toBe(8e9);
    expect(await sample(r, 'ferry_host_workloads{host="h1"}')).toBe(3);
    expect(await sample(r, 'ferry_host_workloads{host="h2"}')).toBeUndefined();

    // A standby exports no cluster state (the leader does): sums over coordinators stay right.
    leading = false;
    expect(await sample(r, 'ferry_coordinator_is_leader')).toBe(0);
    expect(await sample(r, 'ferry_host_alive{host="h1"}')).toBeUndefined();
    expect(await sample(r, 'ferry_fleet_jobs_in_progress{kind="drain"}')).toBeUndefined();
  });

  it('observes no over-budget for a stop-and-copy or a rolled-back migration', async () => {
    const m = coordinatorMetrics({ leading: () => true, inFlight: () => 0, fleetJobs: () => [], hosts: () => [], workloadsOn: () => null, nc: null });
    stops.push(m.stop);
    const ended = (outcome: string, precopy: boolean) => ({
      ...event('migration.ended', { outcome, result: { downtimeMs: 500, bytesOnWire: 10, rounds: 0 } }),
      request: { precopy, downtimeBudgetMs: 100 },
    });
    migrationChannel.publish(ended('rolledBack', true));
    migrationChannel.publish(ended('completed', false));
    expect(await sample(m.registry, 'ferry_migration_downtime_over_budget_total')).toBe(0);
    expect(await sample(m.registry, 'ferry_migrations_total{outcome="rolledBack"}')).toBe(1);
    expect(await sample(m.registry, 'ferry_migration_precopy_rounds_count')).toBe(1);
  });
});
