// Fault injection in a real lab: the coordinator, the source agent and the destination agent are
// each killed with SIGKILL in each phase of a migration, and started again. Afterwards the
// workload (memwriter, which checks every page it wrote) runs exactly once, where the outcome
// says, with its state intact, and the migration's record says what happened.
//
// A daemon is stopped at an exact step by a fault point (FERRY_FAULT, shared/fault.ts): it
// crashes itself there, or, to kill a daemon that is idle in a phase, the busy one stalls at its
// step while the test kills the idle one. A victim agent stays down until the coordinator has
// seen its loss; a stall lasts until the test has killed the victim and seen the coordinator
// notice it, and then releases it (FERRY_FAULT_RELEASE, shared/fault.ts).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabStatus } from '../../../deploy/lab/lab.ts';
import type { MigrationView } from '../../../shared/migration.ts';
import type { WorkloadInfo } from '../../../shared/workload.ts';
import { ferry, ferryJson } from './cli.ts';
import { allAlive, freshLab, untilHosts } from './lab.ts';
import { expectRunsOnceOn, runOnLab, type LabWorkload } from './lab-workloads.ts';

const STALL = 'sleep:15000';

export type Role = 'coordinator' | 'source' | 'destination';
export interface Scenario {
  phase: string;
  victim: Role;
  /** The fault point armed in `armed` (default: the victim); a crash unless it says sleep. */
  armed?: Role;
  fault: string;
  outcome: 'completed' | 'rolledBack';
}

export const scenarios: Scenario[] = [
  // The coordinator dies having done a phase's work but before recording it: its successor
  // replays the phase (every agent step is idempotent) and carries the migration through.
  ...['preflight', 'freeze', 'transfer', 'restore', 'recordCommit', 'resume', 'cleanup'].map(
    (a): Scenario => ({ phase: a === 'recordCommit' ? 'commit' : a, victim: 'coordinator', fault: `coordinator:${a}:after`, outcome: 'completed' }),
  ),
  // The source agent. Before commit its loss rolls back: the freeze it left held is thawed by
  // its successor. After commit the migration rolls forward and the held original is ended.
  { phase: 'preflight', victim: 'source', fault: 'agent:preflight:before', outcome: 'rolledBack' },
  // Live migration: the source dies with a pre-copy round done (its tracker's uffds close with
  // it); the destination dies holding husks it built during pre-copy (they die with it, its
  // successor removes the namespace it rebuilt).
  { phase: 'precopy', victim: 'source', fault: 'agent:precopy:after', outcome: 'rolledBack' },
  { phase: 'precopy', victim: 'destination', armed: 'source', fault: `agent:precopy:after=${STALL}`, outcome: 'rolledBack' },
  { phase: 'freeze', victim: 'source', fault: 'agent:freeze:after', outcome: 'rolledBack' },
  { phase: 'transfer', victim: 'source', fault: 'agent:send:before', outcome: 'rolledBack' },
  { phase: 'restore', victim: 'source', armed: 'destination', fault: `agent:restore:before=${STALL}`, outcome: 'rolledBack' },
  { phase: 'commit', victim: 'source', armed: 'coordinator', fault: `coordinator:recordCommit:before=${STALL}`, outcome: 'rolledBack' },
  { phase: 'resume', victim: 'source', armed: 'destination', fault: `agent:resume:before=${STALL}`, outcome: 'completed' },
  { phase: 'cleanup', victim: 'source', fault: 'agent:cleanup:before', outcome: 'completed' },
  // The destination agent. Its half-built tree dies with it (PTRACE_O_EXITKILL); a built one is
  // held frozen in its cgroup, untraced, so after commit its successor thaws it.
  { phase: 'preflight', victim: 'destination', armed: 'source', fault: `agent:preflight:before=${STALL}`, outcome: 'rolledBack' },
  { phase: 'freeze', victim: 'destination', armed: 'source', fault: `agent:freeze:after=${STALL}`, outcome: 'rolledBack' },
  { phase: 'transfer', victim: 'destination', fault: 'agent:receive:after', outcome: 'rolledBack' },
  { phase: 'restore', victim: 'destination', fault: 'agent:restore:after', outcome: 'rolledBack' },
  { phase: 'commit', victim: 'destination', armed: 'coordinator', fault: `coordinator:recordCommit:before=${STALL}`, outcome: 'rolledBack' },
  { phase: 'resume', victim: 'destination', fault: 'agent:resume:before', outcome: 'completed' },
  { phase: 'cleanup', victim: 'destination', armed: 'source', fault: `agent:cleanup:before=${STALL}`, outcome: 'completed' },
];

/** The scenarios of these victims against one lab; `standby` adds the leader's crash caught by a standby. */
export function describeFaults(env: NodeJS.ProcessEnv, victims: Role[], opts: { standby?: boolean } = {}): void {
describe(`fault injection: the ${victims.join(', ')} killed in every phase of a migration`, () => {
  let w: LabWorkload;

  const daemonOf = (r: Role, from: string, to: string) => (r === 'coordinator' ? 'coordinator' : r === 'source' ? from : to);
  /** The file that ends the armed daemon's stall (one per lab and daemon). */
  const releaseFile = (daemon: string) => join(tmpdir(), `ferry-fault-release-${env.FERRY_LAB}-${daemon}`);

  async function restart(daemon: string, fault?: string): Promise<void> {
    await ferry(['lab', 'kill', daemon], env);
    rmSync(releaseFile(daemon), { force: true });
    const r = await ferry(['lab', 'start', daemon, ...(fault ? ['--env', `FERRY_FAULT=${fault}`, `FERRY_FAULT_RELEASE=${releaseFile(daemon)}`] : [])], env);
    expect(r.code, r.stderr).toBe(0);
  }

  async function running(daemon: string): Promise<boolean> {
    const s = await ferryJson<LabStatus>(['lab', 'status'], env);
    return daemon === 'coordinator' ? s.coordinator.running : (s.hosts.find((h) => h.name === daemon)?.agent.running ?? false);
  }

  /** Where the workload runs now, so that one failed scenario does not mislead the next ones. */
  async function hostOfWorkload(): Promise<string> {
    const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
    const mine = ps.filter((p) => p.name === w.name && p.state === 'running');
    expect(mine.length, `${w.name} runs on ${mine.map((p) => p.host).join(',') || 'no host'}`).toBe(1);
    return mine[0]!.host;
  }

  async function current(): Promise<MigrationView | undefined> {
    const r = await ferry(['history', '--json'], env);
    return r.code === 0 ? (JSON.parse(r.stdout) as MigrationView[]).find((v) => v.workload === w.name && v.outcome === null) : undefined;
  }

  beforeAll(async () => {
    await freshLab(env);
    w = await runOnLab(env, 'h1', 'memwriter', 'mw', ['16', '10', 'random']);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
  });

  it.each(scenarios.filter((s) => victims.includes(s.victim)))('$victim killed in $phase ($fault): $outcome', async (s) => {
    await allAlive(env);
    const from = await hostOfWorkload();
    const to = from === 'h1' ? 'h2' : 'h1';
    const victim = daemonOf(s.victim, from, to);
    const armed = daemonOf(s.armed ?? s.victim, from, to);
    await restart(armed, s.fault);
    await allAlive(env);

    const migrating = ferry(['migrate', w.name, '--to', to, '--json'], env);
    // A migration that never gets going says why (its own report, if it already ended).
    const stuck = async (what: string): Promise<Error> => {
      const ended = await Promise.race([migrating, sleep(2_000).then(() => null)]);
      return new Error(`${what}; migrate: ${ended ? `exit ${ended.code} ${ended.stdout.slice(0, 600)} ${ended.stderr.slice(-600)}` : 'still running'}`);
    };
    if (armed === victim) {
      // It crashes itself at the fault point.
      const deadline = Date.now() + 60_000;
      while (await running(victim)) {
        if (Date.now() > deadline) throw await stuck(`${victim} never reached ${s.fault}`);
        await sleep(100);
      }
    } else {
      // The armed daemon stalls at its step; kill the victim while it does.
      const deadline = Date.now() + 60_000;
      while (!(await current())?.state.startsWith(s.phase)) {
        if (Date.now() > deadline) throw await stuck(`migration never reached ${s.phase}`);
        await sleep(100);
      }
      await ferry(['lab', 'kill', victim], env);
      await untilHosts(env, `the coordinator sees ${victim} lost`, (hs) => hs.some((h) => h.name === victim && !h.alive));
      writeFileSync(releaseFile(armed), '');
    }
    // Down until the coordinator has seen the loss (3 s without heartbeats); a dead coordinator's
    // successor must first wait out its lease.
    if (victim !== 'coordinator') await untilHosts(env, `the coordinator sees ${victim} lost`, (hs) => hs.some((h) => h.name === victim && !h.alive));
    expect((await ferry(['lab', 'start', victim], env)).code).toBe(0);

    const r = await migrating;
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v.outcome, JSON.stringify(v.error)).toBe(s.outcome);
    expect(r.code).toBe(s.outcome === 'completed' ? 0 : 3);
    expect(v.committed).toBe(s.outcome === 'completed');
    // The record says what happened.
    if (s.victim !== 'coordinator') expect(v.agentsLost.map((a) => a.role)).toContain(s.victim);
    if (s.outcome === 'rolledBack') expect(v.error).toMatchObject({ kind: expect.stringMatching(/^(agentLost|error|timeout)$/) });

    // ps asks every agent: wait until the restarted one answers again.
    await allAlive(env);
    await expectRunsOnceOn(env, w, s.outcome === 'completed' ? to : from);
    // Leave no stalled fault armed for the next scenario.
    if (armed !== victim) await restart(armed);
  });

  it.runIf(opts.standby)('a standby coordinator takes over a migration whose leader died, and finishes it', async () => {
    await allAlive(env);
    const from = await hostOfWorkload();
    const to = from === 'h1' ? 'h2' : 'h1';
    // The leader gets the crash point; the standby starts after it holds the lease.
    await restart('coordinator', 'coordinator:transfer:after');
    await allAlive(env);
    expect((await ferry(['lab', 'start', 'coordinator2'], env)).code).toBe(0);
    // The standby is ready once it says it waits for the lease (its leader holds it).
    const log = (await ferryJson<LabStatus>(['lab', 'status'], env)).coordinator2?.log;
    expect(log).toBeTruthy();
    for (const deadline = Date.now() + 30_000; !readFileSync(log!, 'utf8').includes('waiting for the leader lease'); await sleep(100)) {
      if (Date.now() > deadline) throw new Error('the standby coordinator never started waiting for the lease');
    }
    const migrating = ferry(['migrate', w.name, '--to', to, '--json'], env);
    while (await running('coordinator')) await sleep(100);
    // Not restarted: the standby must take the lease and carry the migration on.
    const r = await migrating;
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v.outcome, JSON.stringify(v.error)).toBe('completed');
    expect((await ferryJson<LabStatus>(['lab', 'status'], env)).coordinator2?.running).toBe(true);
    await expectRunsOnceOn(env, w, to);
  });
});
}
