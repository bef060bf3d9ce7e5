// The control plane heals without a human (issue 9, items 5-7): a poisoned KV record and a
// poisoned record file stop no coordinator and no agent; a coordinator that loses NATS for 20 s
// in the middle of a migration carries on by itself; a rollback does not wait for a dead
// destination, which discards its half by itself when it returns; `cancel` says whether it was
// accepted. Asserted as a user would check: the workload's own state, exactly one running copy,
// what the record says, and that no daemon was restarted by hand.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import { labCoordinatorIdentity } from '../../deploy/lab/pki.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry, ferryJson, type CliResult } from './helpers/cli.ts';
import { inClient } from './helpers/lab-clients.ts';
import { allAlive, freshLab, labEnv, untilHosts } from './helpers/lab.ts';
import { expectRunsOnceOn, runOnLab, type LabWorkload } from './helpers/lab-workloads.ts';
import { REPO } from './helpers/cli.ts';

const env = labEnv('itheal');
// Each scenario waits out a fault (a 20 s outage, a dead agent) and then a whole migration.
vi.setConfig({ testTimeout: 600_000, hookTimeout: 600_000 });
/**
 * Armed on both agents for the whole file (restarting agents is slow): a source holds each
 * pre-copy round, and a destination its resume, so that a test acts while the migration is there.
 */
const FAULTS = 'agent:precopy:after=sleep:8000,agent:resume:before=sleep:20000';
const NATS_DOWN_MS = 20_000;

let lab: LabStatus;
let w: LabWorkload;

const status = () => ferryJson<LabStatus>(['lab', 'status'], env);

/**
 * Takes the lab's whole NATS cluster down for `ms` (every nats-N, SIGKILL as a crash), then
 * starts every node again on its own JetStream store. The coordinator may connect to any node,
 * and a cluster that keeps a quorum keeps KV, so losing NATS means losing all of them.
 */
async function natsOutage(ms: number): Promise<void> {
  const nodes = (await status()).natsServers.map((n) => n.name);
  expect(nodes.length).toBeGreaterThan(0);
  for (const n of nodes) expect((await ferry(['lab', 'kill', n], env)).code).toBe(0);
  await sleep(ms);
  for (const n of nodes) expect((await ferry(['lab', 'start', n], env)).code).toBe(0);
}

/**
 * A raw KV operation from the client namespace (test/integration/clients/kv.ts), as the lab's
 * standby coordinator identity: the only role that may write KV, as a buggy or older coordinator would.
 */
async function kv<T>(...args: string[]): Promise<T> {
  const out = await inClient(lab.clientNamespace, [process.execPath, '--import', 'tsx', path.join(REPO, 'test/integration/clients/kv.ts'), env.FERRY_LAB, labCoordinatorIdentity('coordinator2'), ...args]);
  return JSON.parse(out) as T;
}

/** The file that ends an agent's stall at a fault point once the test did what it stalls for. */
const releaseFile = (host: string) => path.join(tmpdir(), `ferry-fault-release-${env.FERRY_LAB}-${host}`);
const release = (host: string) => writeFileSync(releaseFile(host), '');

/** Starts an agent (killed first if it runs) with the file's fault points armed. */
async function startAgent(host: string): Promise<void> {
  await ferry(['lab', 'kill', host], env);
  const r = await ferry(['lab', 'start', host, '--env', `FERRY_FAULT=${FAULTS}`, `FERRY_FAULT_RELEASE=${releaseFile(host)}`], env);
  expect(r.code, r.stderr).toBe(0);
}

async function hostOfWorkload(): Promise<{ from: string; to: string }> {
  const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
  const mine = ps.filter((p) => p.name === w.name && p.state === 'running');
  expect(mine.length, `${w.name} runs on ${mine.map((p) => p.host).join(',') || 'no host'}`).toBe(1);
  const from = mine[0]!.host;
  return { from, to: from === 'h1' ? 'h2' : 'h1' };
}

/** The migration of our workload, once it exists; polled through `history` (any coordinator that leads answers). */
async function until(what: string, ok: (v: MigrationView) => boolean, after: string, timeoutMs = 120_000): Promise<MigrationView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await ferry(['history', '--json'], env);
    if (r.code === 0) {
      const v = (JSON.parse(r.stdout) as MigrationView[]).find((x) => x.workload === w.name && (x.startedAt ?? '') > after);
      if (v && ok(v)) return v;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}: ${r.stderr}`);
    await sleep(200);
  }
}

/** Starts `ferry migrate` in the background and waits until the migration is in `phase`. */
async function migrateUntil(to: string, phase: string, extra: string[] = []): Promise<{ cli: Promise<CliResult>; view: MigrationView }> {
  // No release left over from an earlier stall may cut this migration's short.
  for (const h of ['h1', 'h2']) rmSync(releaseFile(h), { force: true });
  const after = new Date(Date.now() - 1_000).toISOString();
  const cli = ferry(['migrate', w.name, '--to', to, '--json', ...extra], env);
  const view = await until(`the migration is in ${phase}`, (v) => v.state.startsWith(phase), after);
  return { cli, view };
}

const pids = (s: LabStatus) => ({ coordinator: s.coordinator.pid, agents: s.hosts.map((h) => h.agent.pid) });

describe('a control plane that heals without a human', () => {
  beforeAll(async () => {
    lab = await freshLab(env);
    await Promise.all(['h1', 'h2'].map(startAgent));
    await allAlive(env);
    w = await runOnLab(env, 'h1', 'memwriter', 'mwheal', ['16', '10', 'random']);
  });
  afterAll(async () => {
    // The daemons' logs outlive the lab: they say what healed and what did not.
    if (lab) cpSync(path.join(lab.dir, 'logs'), path.join(tmpdir(), `ferry-${env.FERRY_LAB}-logs`), { recursive: true });
    await ferry(['lab', 'down'], env);
  });

  it('a poisoned migrations record and record file stop neither the coordinators nor an agent; they are set aside', async () => {
    const poisoned = 'm-poisoned-0001';
    await kv('put', 'ferry_migrations', `${poisoned}.state`, '{not json');
    await kv('put', 'ferry_migrations', 'not-a-migration', '{"hello":1}');
    const recordDir = path.join(lab.dir, 'agents', 'h2', 'migrations');
    mkdirSync(recordDir, { recursive: true });
    writeFileSync(path.join(recordDir, 'm-poisoned-0002.json'), '{not json');

    // Both coordinators start on the poisoned bucket: the leader sets it aside, the standby waits.
    await ferry(['lab', 'kill', 'coordinator'], env);
    expect((await ferry(['lab', 'start', 'coordinator'], env)).code).toBe(0);
    expect((await ferry(['lab', 'start', 'coordinator2'], env)).code).toBe(0);
    await startAgent('h2');
    // A restarted agent takes a while on a loaded machine.
    await untilHosts(env, 'every agent is alive', (hs) => hs.every((h) => h.alive), 180_000);

    const quarantined = await kv<{ keys: string[] }>('keys', 'ferry_quarantine');
    expect(quarantined.keys).toEqual(expect.arrayContaining([`ferry_migrations.${poisoned}.state`, 'ferry_migrations.not-a-migration']));
    const left = await kv<{ keys: string[] }>('keys', 'ferry_migrations');
    expect(left.keys).not.toContain(`${poisoned}.state`);
    // The migration the bad record stood for is recorded aborted: its agents release their halves.
    expect(JSON.parse((await kv<{ value: string }>('get', 'ferry_migrations', `${poisoned}.decision`)).value)).toMatchObject({ decision: 'aborted' });
    // The agent set its bad file aside and runs.
    await untilTrue('h2 sets its bad record file aside', () => existsSync(path.join(recordDir, 'quarantine')) && !existsSync(path.join(recordDir, 'm-poisoned-0002.json')));
    expect(readdirSync(path.join(recordDir, 'quarantine')).some((f) => f.startsWith('m-poisoned-0002.json'))).toBe(true);
    const s = await status();
    expect([s.coordinator.running, s.coordinator2?.running, s.hosts.every((h) => h.agent.running)]).toEqual([true, true, true]);
    expect(readFileSync(path.join(lab.dir, 'logs', 'coordinator.log'), 'utf8')).toContain(`${poisoned}.state`);

    // Nothing blocks the next migration of the same workload.
    const { from, to } = await hostOfWorkload();
    const r = await ferry(['migrate', w.name, '--to', to, '--json', '--max-rounds', '2'], env);
    expect(JSON.parse(r.stdout).outcome, r.stderr).toBe('completed');
    await expectRunsOnceOn(env, w, to);
    expect(from).not.toBe(to);
    // Back to one coordinator for what follows.
    await ferry(['lab', 'kill', 'coordinator2'], env);
  });

  it('a coordinator that loses NATS for 20 s in the middle of a migration carries on by itself', async () => {
    await allAlive(env);
    const { from, to } = await hostOfWorkload();
    const before = pids(await status());
    const { cli, view } = await migrateUntil(to, 'precopy', ['--max-rounds', '2']);

    await natsOutage(NATS_DOWN_MS);

    // Found by id: `after` is only a lower bound on startedAt, and this migration's own is not after itself.
    const v = await until('the migration ends', (x) => x.id === view.id && x.outcome !== null, '', 540_000);
    await cli;
    // No daemon was restarted: the same processes healed.
    expect(pids(await status())).toEqual(before);
    expect(['completed', 'rolledBack'], JSON.stringify(v.error)).toContain(v.outcome);
    expect(v.committed).toBe(v.outcome === 'completed');
    expect(v.needsOperator).toBe(false);
    await allAlive(env);
    await expectRunsOnceOn(env, w, v.outcome === 'completed' ? to : from);
  });

  it('a rollback does not wait for a dead destination, which discards its half by itself when it returns', async () => {
    await allAlive(env);
    const { from, to } = await hostOfWorkload();
    const { cli, view } = await migrateUntil(to, 'precopy', ['--max-rounds', '2']);
    await ferry(['lab', 'kill', to], env);
    release(from);

    const r = await cli;
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v.outcome, JSON.stringify(v.error)).toBe('rolledBack');
    expect(r.code).toBe(3);
    // Ended while the destination was still down: nothing waited for it.
    expect((await status()).hosts.find((h) => h.name === to)!.agent.running).toBe(false);
    expect(v.destinationDiscardPending).toBe(true);
    expect(v.agentsLost.map((a) => a.role)).toContain('destination');
    await untilHosts(env, `${from} alive`, (hs) => hs.some((h) => h.name === from && h.alive));
    await expectRunsOnceOn(env, w, from);

    // The destination returns and discards its half, fenced by the recorded abort.
    await startAgent(to);
    const record = path.join(lab.dir, 'agents', to, 'migrations', `${view.id}.json`);
    await untilTrue(`${to} fences ${view.id}`, () => existsSync(record) && (JSON.parse(readFileSync(record, 'utf8')) as { fenced: boolean }).fenced);
    const landing = (JSON.parse(readFileSync(record, 'utf8')) as { landing?: string | null }).landing;
    if (landing) expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(landing);
    await allAlive(env);
    await expectRunsOnceOn(env, w, from);
  });

  it('cancel says whether it was accepted, with a matching exit code', async () => {
    await allAlive(env);
    const { from, to } = await hostOfWorkload();

    // Before the commit point: accepted (exit 0), and the migration rolls back.
    const { cli, view } = await migrateUntil(to, 'precopy', ['--max-rounds', '2']);
    const c = await ferry(['cancel', view.id], env);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toContain('cancel accepted');
    release(from);
    const v = JSON.parse((await cli).stdout) as MigrationView;
    expect(v.outcome).toBe('rolledBack');
    expect(v.error?.kind).toBe('cancelled');
    await expectRunsOnceOn(env, w, from);

    // Once it ended: refused, exit 2, and said so.
    const ended = await ferry(['cancel', view.id, '--json'], env);
    expect(ended.code).toBe(2);
    expect(JSON.parse(ended.stdout).error.message).toContain('already ended');

    // After the commit point: refused (exit 2), and the migration completes.
    const late = await migrateUntil(to, 'resume', ['--max-rounds', '2']);
    const refused = await ferry(['cancel', late.view.id], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('cancel refused');
    release(to);
    const done = JSON.parse((await late.cli).stdout) as MigrationView;
    expect(done.outcome).toBe('completed');
    await expectRunsOnceOn(env, w, to);
  });
});

async function untilTrue(what: string, ok: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(200);
  }
}
