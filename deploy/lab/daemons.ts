// The lab's daemons one by one: how each is started, and `lab kill` / `lab start` for tests and
// demos that take a daemon down the hard way (SIGKILL, as a crash) and bring it back, possibly
// with a crash point armed (FERRY_FAULT, see shared/fault.ts).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isGone } from '../../agent/engine/process/procfs.ts';
import type { CoordinatorConfig } from '../../shared/config.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { DAEMONS_HELP, NATS_NODES, labLayout, type LabLayout } from './layout.ts';
import { labCoordinatorIdentity, labNatsAccess } from './pki.ts';
import { LAB_MEMBER_ENV, isRunning, startInNamespace, type StartedProcess } from './processes.ts';
import { readState, withStateLock, writeState, type LabState } from './state.ts';

// In a checkout the daemons run the build's JavaScript (dist/) while it is current (the same
// stamp check as bin/ferry.js: `node bin/build-current.js` exits 0), and their TypeScript sources
// through tsx otherwise, so they never run stale code: tsx costs each daemon start about a second
// of CPU, which the fault tests' many restarts and a loaded machine feel. The installed package
// (/usr/lib/ferry, deploy/package) has no sources: its daemons run its JavaScript.
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..').replace(/\/dist$/, '');
let buildCurrent: boolean | undefined;
const buildIsCurrent = () => (buildCurrent ??= spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'build-current.js')]).status === 0);
const tsEntry = (rel: string) => {
  const source = path.join(REPO_ROOT, rel);
  if (!existsSync(source)) return [process.execPath, source.replace(/\.ts$/, '.js')];
  return buildIsCurrent() ? [process.execPath, path.join(REPO_ROOT, 'dist', rel.replace(/\.ts$/, '.js'))] : [process.execPath, '--import', 'tsx', source];
};

const start = (l: LabLayout, ns: string, argv: string[], logName: string, marker: string, env: Record<string, string> = {}) =>
  startInNamespace(ns, argv, path.join(l.dir, 'logs', logName), marker, { ...env, [LAB_MEMBER_ENV]: l.name });

/**
 * The coordinators and NATS at nice -10, as the coordinator's systemd unit runs: the lab's hosts
 * share this machine's CPUs, and a CPU hog on one host must not starve the control plane, which
 * on a real cluster runs elsewhere. Agents raise themselves for a switchover only
 * (agent/switchover-priority.ts).
 */
const raised = (argv: string[]): string[] => ['nice', '-n', '-10', ...argv];

/** A coordinator: `coordinator` leads first; `coordinator2` is a standby that takes over. */
export function startCoordinator(l: LabLayout, name: 'coordinator' | 'coordinator2', env?: Record<string, string>): StartedProcess {
  const conf = path.join(l.dir, `${name}.json`);
  const identity = labCoordinatorIdentity(name);
  // A short lease: in the lab a killed leader is replaced within about two seconds.
  // Its dashboard on the management network, served with its own identity (valid for the control address).
  const cfg: Partial<CoordinatorConfig> = {
    id: identity,
    nats: labNatsAccess(l, identity),
    leaseTtlMs: 2_000,
    kvReplicas: NATS_NODES,
    workloadNetwork: l.workloadNetwork,
    dashboard: { listen: l.dashboardListen(name), sessionTtlMs: 8 * 3_600_000 },
    metrics: { listen: l.coordinatorMetricsListen(name), tokenFile: l.metricsTokenFile },
  };
  writeFileSync(conf, JSON.stringify(cfg, null, 2));
  return start(l, l.switchNamespace, raised([...tsEntry('coordinator/main.ts'), '--config', conf]), `${name}.log`, conf, env);
}

export function startAgent(l: LabLayout, host: { name: string; namespace: string; agentConfig: string }, env?: Record<string, string>): StartedProcess {
  return start(l, host.namespace, [...tsEntry('agent/main.ts'), '--config', host.agentConfig], `agent-${host.name}.log`, host.agentConfig, env);
}

/** nats-server node n in its own namespace; its config is written by lab up (nats/nats-<n>.conf). */
export function startNats(l: LabLayout, n: number): StartedProcess {
  const conf = natsConfigFile(l, n);
  return start(l, l.natsNamespace(n), raised(['nats-server', '-c', conf]), `${l.natsName(n)}.log`, conf);
}

export const natsConfigFile = (l: LabLayout, n: number): string => path.join(l.dir, 'nats', `${l.natsName(n)}.conf`);

function stateOf(): { l: LabLayout; s: LabState } {
  const l = labLayout();
  const s = readState(l.dir);
  if (!s) throw new FerryError(ErrorCode.Lab, `lab "${l.name}" is not up`);
  return { l, s };
}

function current(s: LabState, daemon: string): StartedProcess | undefined {
  if (daemon === 'coordinator') return s.coordinator;
  if (daemon === 'coordinator2') return s.coordinator2;
  const node = s.natsServers.find((x) => x.name === daemon);
  if (node) return node;
  const h = s.hosts.find((x) => x.name === daemon);
  if (!h) throw new FerryError(ErrorCode.InvalidRequest, `no daemon "${daemon}" in this lab: name ${DAEMONS_HELP}`);
  return h.agent;
}

/** Kills a daemon with SIGKILL, as a crash would; returns its pid (null if it was not running). */
export async function labKill(daemon: string): Promise<{ daemon: string; pid: number | null }> {
  const { s } = stateOf();
  const p = current(s, daemon);
  if (!p || !isRunning(p)) return { daemon, pid: null };
  process.kill(p.pid, 'SIGKILL');
  while (!isGone(p.pid)) await sleep(10);
  return { daemon, pid: p.pid };
}

/** Starts a daemon that is not running (after a kill or a crash), with extra environment. */
export function labStart(daemon: string, env: Record<string, string> = {}): { daemon: string; pid: number } {
  return withStateLock(labLayout().dir, () => startLocked(daemon, env));
}

function startLocked(daemon: string, env: Record<string, string>): { daemon: string; pid: number } {
  const { l, s } = stateOf();
  const p = current(s, daemon);
  if (p && isRunning(p)) throw new FerryError(ErrorCode.InvalidRequest, `${daemon} is already running (pid ${p.pid}): kill it first`);
  let started: StartedProcess;
  if (daemon === 'coordinator' || daemon === 'coordinator2') {
    started = startCoordinator(l, daemon, env);
    s[daemon] = started;
  } else if (s.natsServers.some((x) => x.name === daemon)) {
    const i = s.natsServers.findIndex((x) => x.name === daemon);
    started = startNats(l, i + 1);
    s.natsServers[i] = { ...s.natsServers[i]!, ...started };
  } else {
    const h = s.hosts.find((x) => x.name === daemon)!;
    started = startAgent(l, h, env);
    h.agent = started;
  }
  writeState(l.dir, s);
  return { daemon, pid: started.pid };
}
