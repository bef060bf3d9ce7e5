// `ferry run` / `ps` / `stop` in a real lab: workloads are containers with their own pid, uts,
// ipc and time namespaces, registered with their host's agent.
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { isGone } from '../../agent/engine/process/procfs.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { MigrationEvent } from '../../shared/migration-events.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { inClient } from './helpers/lab-clients.ts';
import { useLab, labEnv } from './helpers/lab.ts';

const env = labEnv('itcont');
const ns = (pid: number, kind: string) => readlinkSync(`/proc/${pid}/ns/${kind}`);

// One process in the lab's client namespace (where the CLI reaches NATS from) fetches every URL,
// with the token or without, over real HTTP; it prints each answer's status and body.
const SCRAPE = `(async () => {
  const out = [];
  for (const t of JSON.parse(process.argv[1])) {
    const r = await fetch(t.url, { headers: t.token ? { authorization: 'Bearer ' + t.token } : {} });
    out.push({ url: t.url, status: r.status, body: await r.text() });
  }
  process.stdout.write(JSON.stringify(out));
})();`;
async function scrape(clientNs: string, targets: { url: string; token: string | null }[]): Promise<{ url: string; status: number; body: string }[]> {
  return JSON.parse(await inClient(clientNs, [process.execPath, '-e', SCRAPE, JSON.stringify(targets)])) as { url: string; status: number; body: string }[];
}
/** A sample's value in Prometheus text (0 when the series is absent). */
const value = (text: string, series: string): number => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.slice(series.length + 1) ?? 0);


describe('containers', () => {
  useLab(env);

  it('runs a workload in its own namespaces, lists it, and stops it', async () => {
    // The workload counts into a file of its own; its progress proves it runs.
    const out = `/tmp/ferry-it-counter-${process.pid}`;
    const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'ctr', '--env', 'GREETING=hi', '--', '/bin/sh', '-c', `i=0; while :; do i=$((i+1)); echo $i > ${out}; sleep 0.05; done`], env);
    expect(w.host).toBe('h2');
    expect(w.rootPid).toBeGreaterThan(1);
    const root = w.rootPid!;
    for (const kind of ['pid', 'uts', 'ipc', 'time', 'net']) expect(ns(root, kind)).not.toBe(ns(process.pid, kind));
    expect(w.address).toMatch(/^10\.77\./);
    // PID 1 inside its own pid namespace, hostname = workload name.
    expect(readFileSync(`/proc/${root}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
    expect(w.cgroup).toContain(`/ferry-lab/${env.FERRY_LAB}/h2/ctr`);
    expect(readFileSync(`/proc/${root}/cgroup`, 'utf8')).toContain(`/ferry-lab/${env.FERRY_LAB}/h2/ctr`);
    // Its environment is what it was given (and the lab's mark), nothing of the agent's.
    const environ = readFileSync(`/proc/${root}/environ`, 'latin1').split('\0');
    expect(environ).toContain('GREETING=hi');
    expect(environ.filter((v) => v.startsWith('FERRY_')).map((v) => v.split('=')[0])).toEqual(['FERRY_LAB_MEMBER']);

    // It counts: the file it writes changes (waited for, as the shell starts when it starts).
    const count = () => (existsSync(out) ? Number(readFileSync(out, 'utf8')) || 0 : 0);
    for (const end = Date.now() + 10_000; count() === 0; await sleep(20)) if (Date.now() > end) throw new Error('the counter never started');
    const first = count();
    for (const end = Date.now() + 10_000; count() <= first; await sleep(20)) if (Date.now() > end) throw new Error('the counter stopped');

    const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(ps).toHaveLength(1);
    expect(ps[0]).toMatchObject({ name: 'ctr', host: 'h2', state: 'running', rootPid: root });
    expect(ps[0]!.pids[0]).toBe(root);
    expect(ps[0]!.memoryBytes).toBeGreaterThan(0);

    const dup = await ferry(['run', '--host', 'h1', '--name', 'ctr', '--', 'sleep', '5'], env);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain('already runs on h2');

    const stopped = await ferryJson<WorkloadInfo>(['stop', 'ctr'], env);
    expect(stopped.state).toBe('exited');
    const last = Number(readFileSync(out, 'utf8'));
    await sleep(200);
    expect(Number(readFileSync(out, 'utf8'))).toBe(last);
    expect(await ferryJson<WorkloadInfo[]>(['ps'], env)).toEqual([]);
  });

  it('rejects bad requests before starting anything', async () => {
    const unknownHost = await ferry(['run', '--host', 'h7', '--name', 'x', '--', 'sleep', '1'], env);
    expect(unknownHost.code).toBe(2);
    expect(unknownHost.stderr).toContain('unknown host "h7"');
    const badName = await ferry(['run', '--host', 'h1', '--name', 'Bad_Name', '--', 'sleep', '1'], env);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('name');
    const noExe = await ferry(['run', '--host', 'h1', '--name', 'ghost', '--', '/no/such/program'], env);
    expect(noExe.code).toBe(2);
    expect(await ferryJson<WorkloadInfo[]>(['ps'], env)).toEqual([]);
  });

  it('migrate --json streams events on stderr (the id first) and prints the report on stdout; watch of an ended or unknown migration returns at once', async () => {
    await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'mover', '--', 'sleep', '1000'], env);
    const m = await ferry(['migrate', 'mover', '--to', 'h2', '--json'], env);
    expect(m.code, m.stderr).toBe(0);
    const view = JSON.parse(m.stdout) as MigrationView;
    expect(view).toMatchObject({ workload: 'mover', from: 'h1', to: 'h2', outcome: 'completed' });
    const events = m.stderr.trim().split('\n').map((l) => JSON.parse(l) as MigrationEvent);
    expect(events[0]).toMatchObject({ type: 'migration.accepted', migrationId: view.id });
    expect(events.at(-1)).toMatchObject({ type: 'migration.ended', migrationId: view.id });
    expect(events.map((e) => e.type)).toContain('phase.entered');
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    for (const e of events) expect(e.at).toMatch(iso);
    expect(view.startedAt).toMatch(iso);

    // An ended migration: its final state, and the exit code of its outcome.
    const ended = await ferry(['watch', view.id], env);
    expect(ended.code).toBe(0);
    expect(ended.stdout).toContain(`migration ${view.id}: mover h1 -> h2: completed`);
    const endedJson = await ferry(['watch', view.id, '--json'], env);
    expect(JSON.parse(endedJson.stdout)).toMatchObject({ id: view.id, outcome: 'completed' });
    // Unknown: an invalid request, at once.
    const unknown = await ferry(['watch', 'm-nosuchmigration'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no migration m-nosuchmigration');
    expect((await ferry(['watch', 'not-an-id'], env)).code).toBe(2);
    await ferryJson(['stop', 'mover'], env);
  });

  // After the test before: the live migration of "mover" from h1 to h2.
  it("serves every daemon's metrics to the lab's token only, with the migration counted by the coordinator and both agents", async () => {
    const lab = await ferryJson<LabStatus>(['lab', 'status'], env);
    const token = readFileSync(lab.metricsTokenFile, 'utf8').trim();
    expect(statSync(lab.metricsTokenFile).mode & 0o777).toBe(0o600);
    const agentUrl = (h: string) => lab.hosts.find((x) => x.name === h)!.agent.metricsUrl;
    const daemons = [lab.coordinator.metricsUrl, agentUrl('h1'), agentUrl('h2')];
    const answers = await scrape(lab.clientNamespace, [...daemons.map((url) => ({ url, token })), ...daemons.map((url) => ({ url, token: null }))]);
    const [coordinator, h1, h2, ...anonymous] = answers;
    for (const a of answers.slice(0, 3)) expect(a.status, a.url).toBe(200);
    for (const a of anonymous) {
      expect(a.status, a.url).toBe(401);
      expect(a.body).not.toContain('ferry_');
    }
    const c = coordinator!.body;
    expect(value(c, 'ferry_coordinator_is_leader')).toBe(1);
    expect(value(c, 'ferry_migrations_total{outcome="completed"}')).toBeGreaterThanOrEqual(1);
    expect(value(c, 'ferry_migration_downtime_seconds_count{kind="actual"}')).toBeGreaterThanOrEqual(1);
    expect(value(c, 'ferry_migration_phase_duration_seconds_count{phase="freeze"}')).toBeGreaterThanOrEqual(1);
    expect(value(c, 'ferry_migration_sent_bytes_total')).toBeGreaterThan(0);
    expect(value(c, 'ferry_host_alive{host="h1"}')).toBe(1);
    expect(value(c, 'ferry_nats_connected')).toBe(1);
    // The source sent the workload, the destination received it, over the data stream.
    expect(value(h1!.body, 'ferry_agent_stream_bytes_total{direction="sent"}')).toBeGreaterThan(0);
    expect(value(h2!.body, 'ferry_agent_stream_bytes_total{direction="received"}')).toBeGreaterThan(0);
    expect(value(h1!.body, 'ferry_agent_precopy_rounds_total')).toBeGreaterThanOrEqual(1);
    expect(value(h2!.body, 'ferry_agent_migration_step_duration_seconds_count{step="restore",outcome="ok"}')).toBeGreaterThanOrEqual(1);
    for (const a of [h1!, h2!]) expect(value(a.body, 'ferry_nats_connected'), a.url).toBe(1);
  });

  it('lab down ends workloads the lab started, also one that overwrote its environment', async () => {
    const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'left', '--', 'sleep', '1000'], env);
    // redis-server writes its process title over its environment, the lab's mark included.
    const r = await ferryJson<WorkloadInfo>(['run', '--host', 'h2', '--name', 'titled', '--', '/usr/bin/redis-server', '--port', '6390', '--save', ''], env);
    // redis sets its title once it has started: waited for, not slept on.
    for (const end = Date.now() + 10_000; readFileSync(`/proc/${r.rootPid}/environ`, 'latin1').includes('FERRY_LAB_MEMBER'); await sleep(20)) {
      if (Date.now() > end) throw new Error('redis-server never overwrote its environment');
    }
    await ferry(['lab', 'down'], env);
    expect(isGone(w.rootPid!)).toBe(true);
    expect(isGone(r.rootPid!)).toBe(true);
    expect(existsSync(w.cgroup!.split(`/${env.FERRY_LAB}/`)[0] + `/${env.FERRY_LAB}`)).toBe(false);
  });
});
