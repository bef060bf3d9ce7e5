// Losing one NATS node in any phase of a migration loses nothing (issue 9, item 6): the lab runs
// a 3-node cluster with JetStream KV on 3 replicas, so two nodes keep a quorum. In each phase the
// node that the coordinator is connected to is killed (the worst one to lose: the coordinator must
// reconnect mid-phase); the migration must end by itself, with exactly one copy of the workload
// running where its record says, the workload's own checks passing, and the node back afterwards.
//
// A fault point stalls the daemon that does the phase's work (FERRY_FAULT, shared/fault.ts), so
// the node dies while the migration is in that phase, not before or after it. Each phase moves a
// workload of its own, and the points name it, so each daemon is armed once for the whole file.
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import { LAB_OPERATOR } from '../../deploy/lab/pki.ts';
import type { MigrationView } from '../../shared/migration.ts';
import { MigrationEventWire } from '../../shared/migration-events.ts';
import { decode } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import { labNats } from './helpers/lab-nats.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { allAlive, freshLab, labEnv } from './helpers/lab.ts';
import { expectRunsOnceOn, progresses, runOnLab, type LabWorkload } from './helpers/lab-workloads.ts';

const execFileP = promisify(execFile);
const env = labEnv('itnatsloss');
// Long enough for the test to see the phase and kill the node under load, and shorter than any
// phase's timeout (commit: 10 s); the test ends it (FERRY_FAULT_RELEASE, shared/fault.ts) once the node is gone.
const STALL = 'sleep:8000';
// After its NATS node goes, the coordinator may stand by until the KV streams that node led have
// new leaders: on a loaded machine that takes tens of seconds.
const RECOVERY_MS = 120_000;
// Restarting the three armed daemons and starting eight workloads: minutes on a loaded machine.
vi.setConfig({ hookTimeout: 300_000 });

type Armed = 'source' | 'destination' | 'coordinator';
/** A migration phase (as its record names it), and the step that is held while the node dies. */
const phases: { phase: string; armed: Armed; fault: string }[] = [
  { phase: 'preflight', armed: 'source', fault: `agent:preflight:after=${STALL}` },
  { phase: 'precopy', armed: 'source', fault: `agent:precopy:after=${STALL}` },
  { phase: 'freeze', armed: 'source', fault: `agent:freeze:after=${STALL}` },
  { phase: 'transfer', armed: 'source', fault: `agent:send:before=${STALL}` },
  { phase: 'restore', armed: 'destination', fault: `agent:restore:before=${STALL}` },
  { phase: 'commit', armed: 'coordinator', fault: `coordinator:recordCommit:before=${STALL}` },
  { phase: 'resume', armed: 'destination', fault: `agent:resume:before=${STALL}` },
  { phase: 'cleanup', armed: 'source', fault: `agent:cleanup:before=${STALL}` },
];

const status = () => ferryJson<LabStatus>(['lab', 'status'], env);

/** The NATS node that the coordinator's connection is on, from each node's own monitoring (connz). */
async function coordinatorsNode(s: LabStatus): Promise<string> {
  for (const n of s.natsServers.filter((x) => x.running)) {
    const host = /\/\/([^:/]+)/.exec(n.url)?.[1];
    const script = `fetch('http://${host}:8222/connz?limit=4096').then((r) => r.text()).then((t) => process.stdout.write(t))`;
    const { stdout } = await execFileP('ip', ['netns', 'exec', n.namespace, process.execPath, '-e', script]);
    const conns = (JSON.parse(stdout) as { connections?: { name?: string }[] }).connections ?? [];
    if (conns.some((c) => c.name?.startsWith('ferry-coordinator-'))) return n.name;
  }
  throw new Error('the coordinator is connected to no NATS node');
}

/** A node is back in the cluster once its monitoring says JetStream is healthy (routes up, streams caught up). */
async function untilHealthy(s: LabStatus, name: string): Promise<void> {
  const n = s.natsServers.find((x) => x.name === name)!;
  const host = /\/\/([^:/]+)/.exec(n.url)?.[1];
  // Plain healthz: JetStream enabled, and every stream and consumer of this node current.
  const script = `fetch('http://${host}:8222/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await execFileP('ip', ['netns', 'exec', n.namespace, process.execPath, '-e', script]).then(
      () => true,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${name} did not become healthy within 60 s`);
    await sleep(200);
  }
}

/**
 * Asks again while the control plane answers that it is unavailable (exit 4, retryable), as a
 * script would: with a NATS node just lost, a request may time out while streams and routes
 * settle, though a coordinator leads. Any other failure counts at once.
 */
async function whileUnavailable<T>(ask: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + RECOVERY_MS;
  for (;;) {
    try {
      return await ask();
    } catch (err) {
      if (!/ exited 4: /.test((err as Error).message) || Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

/** Each phase's scenario moves a workload of its own, h1 -> h2, so every fault point is armed once for all. */
const workloadOf = (phase: string) => `nl-${phase}`;
const armedOn = (who: Armed) =>
  phases
    .filter((p) => p.armed === who)
    .map((p) => p.fault.replace('=', `@${workloadOf(p.phase)}=`))
    .join(',');
const DAEMON: Record<Armed, string> = { source: 'h1', destination: 'h2', coordinator: 'coordinator' };
const releaseFile = (daemon: string) => join(tmpdir(), `ferry-fault-release-${env.FERRY_LAB}-${daemon}`);

describe('one NATS node lost in each phase of a migration', () => {
  const ws = new Map<string, LabWorkload>();
  /** Each workload's migration states, in the order its events told them. */
  const seen = new Map<string, string[]>();
  let nc: NatsConnection | null = null;

  beforeAll(async () => {
    await freshLab(env);
    for (const who of ['source', 'destination', 'coordinator'] as const) {
      await ferry(['lab', 'kill', DAEMON[who]], env);
      const r = await ferry(['lab', 'start', DAEMON[who], '--env', `FERRY_FAULT=${armedOn(who)}`, `FERRY_FAULT_RELEASE=${releaseFile(DAEMON[who])}`], env);
      expect(r.code, r.stderr).toBe(0);
    }
    await allAlive(env);
    for (const { phase } of phases) ws.set(phase, await runOnLab(env, 'h1', 'memwriter', workloadOf(phase), ['8', '10', 'random']));
    // As the operator: it may watch migration events. Reconnects to another node when its own dies.
    nc = await labNats(env, LAB_OPERATOR);
    const events = nc.subscribe(subjects.migrationEventsAll);
    void (async () => {
      for await (const m of events) {
        const e = decode(MigrationEventWire, m.data, 'migration event');
        seen.set(e.view.workload, [...(seen.get(e.view.workload) ?? []), e.view.state]);
      }
    })();
  });
  afterAll(async () => {
    await nc?.close();
    await ferry(['lab', 'down'], env);
  });

  it.each(phases)('killed in $phase: the migration ends by itself and the workload runs exactly once', async ({ phase, armed }) => {
    const w = ws.get(phase)!;
    await allAlive(env, RECOVERY_MS);
    rmSync(releaseFile(DAEMON[armed]), { force: true });
    const s = await status();
    const node = await coordinatorsNode(s);
    const migrating = ferry(['migrate', w.name, '--to', 'h2', '--json'], env);
    // The migration's own events say when it is in the phase (polling `history` can miss a short one).
    const deadline = Date.now() + 60_000;
    for (;;) {
      const states = seen.get(w.name) ?? [];
      if (states.some((st) => st.startsWith(phase))) break;
      if (states.some((st) => st === 'completed' || st === 'rolledBack' || st === 'failed')) throw new Error(`the migration ended (${states.join(' > ')}) before it reached ${phase}`);
      if (Date.now() > deadline) {
        const ended = await Promise.race([migrating, sleep(2_000).then(() => null)]);
        throw new Error(`the migration never reached ${phase} (${states.join(' > ') || 'no event'}); migrate: ${ended ? `exit ${ended.code} ${ended.stdout.slice(0, 400)} ${ended.stderr.slice(-400)}` : 'still running'}`);
      }
      await sleep(20);
    }
    expect((await ferry(['lab', 'kill', node], env)).code).toBe(0);
    // The node comes back whatever this scenario finds: a second node lost would lose the quorum
    // in every scenario after a failed one.
    onTestFinished(async () => {
      expect((await ferry(['lab', 'start', node], env)).code).toBe(0);
      await untilHealthy(s, node);
    });
    // The node is gone: the held step may go on.
    writeFileSync(releaseFile(DAEMON[armed]), '');

    const r = await migrating;
    const v = JSON.parse(r.stdout) as MigrationView;
    // Two nodes keep the quorum: nothing is lost, so the migration goes through.
    expect(v.outcome, `${r.stderr.slice(-400)} ${JSON.stringify(v.error)}`).toBe('completed');
    expect(r.code).toBe(0);
    expect(v.committed).toBe(true);
    // The coordinator may still be taking its lease back after its node went (a KV stream's
    // leader moves too): wait until one leads and sees every agent before asking where w runs.
    await allAlive(env, RECOVERY_MS);
    await whileUnavailable(() => expectRunsOnceOn(env, w, 'h2'));
    await progresses(w);
  }, 3 * RECOVERY_MS);
});
