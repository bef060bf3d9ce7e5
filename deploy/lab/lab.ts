// The local lab: several ferry hosts on one machine. `up` builds the fabric, starts nats-server,
// the coordinator and one agent per host, and returns once every host is registered and alive;
// `down` removes everything a lab made, also after a crash, and is safe to run twice.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { hostLayout } from '../../agent/cgroups/layout.ts';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { AgentConfig } from '../../shared/config.ts';
import { LAB_PREFIX_LEN, MAX_HOSTS, NATS_MONITOR_PORT, NATS_PORT, labLayout, type LabLayout } from './layout.ts';
import { labAgentTls } from './pki.ts';
import { buildFabric, labNamespaces, namespaceExists, removeNamespaces } from './network.ts';
import { startAgent, startCoordinator, startNats } from './daemons.ts';
import { LAB_MEMBER_ENV, isRunning, killAll, labProcessesInNamespaces, stopProcess, type StartedProcess } from './processes.ts';
import { readState, writeState, type LabState } from './state.ts';

export { REPO_ROOT } from './daemons.ts';

export interface LabStatus {
  name: string;
  up: boolean;
  dir: string;
  natsUrl: string;
  switchNamespace: string;
  clientNamespace: string;
  nats: { pid: number | null; running: boolean };
  coordinator: { pid: number | null; running: boolean };
  /** The standby coordinator, once `ferry lab start coordinator2` started one. */
  coordinator2: { pid: number | null; running: boolean } | null;
  hosts: { name: string; namespace: string; address: string; agent: { pid: number; running: boolean; log: string } }[];
}

function natsConfig(l: LabLayout): string {
  return [
    `server_name: ferry-${l.name}`,
    `listen: "${l.controlAddress}:${NATS_PORT}"`,
    `http: "${l.controlAddress}:${NATS_MONITOR_PORT}"`,
    `jetstream { store_dir: "${path.join(l.dir, 'nats')}", max_memory_store: 256MB, max_file_store: 2GB }`,
    '',
  ].join('\n');
}

function tailOf(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Each lab's workloads get cgroups of their own, so labs never share one. */
const labCgroupParent = (l: LabLayout, host: string) => path.join('ferry-lab', l.name, host);

/** The lab's cgroup directories in every hierarchy (v2, and each v1 one workloads use), parents first. */
function labCgroups(l: LabLayout): string[] {
  const layout = hostLayout();
  const roots = [layout.v2Root, ...layout.v1Mounts.values()].filter((r): r is string => r !== null);
  const dirs: string[] = [];
  const walk = (d: string) => {
    dirs.push(d);
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  for (const root of new Set(roots)) {
    const top = path.join(root, 'ferry-lab', l.name);
    if (existsSync(top)) walk(top);
  }
  return dirs;
}

/**
 * Processes in the lab's cgroups: only the lab's agents put workloads there. This finds the ones
 * whose environment no longer shows the lab's mark (redis-server, for one, overwrites it with its
 * process title).
 */
function labCgroupProcesses(l: LabLayout): number[] {
  return labCgroups(l).flatMap((d) => {
    try {
      return readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

/** Removes the lab's (by now empty) cgroups, deepest first. */
function removeLabCgroups(l: LabLayout): void {
  for (const d of labCgroups(l).reverse()) {
    try {
      rmdirSync(d);
    } catch {
      // a process still inside (not the lab's): leave it
    }
  }
}

export interface UpOptions {
  hosts: number;
  /** Called while waiting for the cluster, to show progress. */
  onProgress?: (msg: string) => void;
  /** Waits until every agent is alive in the coordinator's view; the lab's CLI passes this in. */
  waitReady: (l: LabLayout, hosts: number, timeoutMs: number) => Promise<void>;
}

export async function labUp(o: UpOptions): Promise<LabStatus> {
  if (!Number.isInteger(o.hosts) || o.hosts < 2 || o.hosts > MAX_HOSTS) {
    throw new FerryError(ErrorCode.InvalidRequest, `--hosts must be a whole number from 2 to ${MAX_HOSTS}, got ${o.hosts}`);
  }
  const l = labLayout();
  if ((await labNamespaces(l)).length > 0 || readState(l.dir)) {
    throw new FerryError(ErrorCode.Lab, `lab "${l.name}" is already up (or left over from a crash): run \`ferry lab down\` first`);
  }
  const progress = o.onProgress ?? (() => undefined);
  try {
    for (const d of ['nats', 'agents', 'logs']) mkdirSync(path.join(l.dir, d), { recursive: true });
    progress(`building fabric: switch, client and ${o.hosts} hosts`);
    await buildFabric(l, o.hosts);

    const natsConf = path.join(l.dir, 'nats.conf');
    writeFileSync(natsConf, natsConfig(l));
    const nats = startNats(l, natsConf);
    const coordinator = startCoordinator(l, 'coordinator');

    const hosts: LabState['hosts'] = [];
    for (let i = 1; i <= o.hosts; i++) {
      const name = l.hostName(i);
      const agentConfig = path.join(l.dir, 'agents', `${name}.json`);
      const cfg: Partial<AgentConfig> = {
        name,
        address: l.hostAddress(i),
        nats: { servers: [l.natsUrl] },
        tls: labAgentTls(l, name, l.hostAddress(i)),
        stateDir: path.join(l.dir, 'agents', name),
        cgroupParent: labCgroupParent(l, name),
        // Workloads carry the lab's mark too, so that `lab down` ends them even after a crash.
        workloadEnv: { [LAB_MEMBER_ENV]: l.name },
        // Workload namespaces are named like the lab's own, so `lab down` removes them too.
        network: { bridge: 'br0', prefixLen: LAB_PREFIX_LEN, netnsPrefix: l.workloadNetnsPrefix },
      };
      writeFileSync(agentConfig, JSON.stringify(cfg, null, 2));
      const host = { name, namespace: l.hostNamespace(i), address: l.hostAddress(i), agentConfig };
      hosts.push({ ...host, agent: startAgent(l, host) });
    }
    writeState(l.dir, {
      version: 1,
      name: l.name,
      createdAt: new Date().toISOString(),
      natsUrl: l.natsUrl,
      switchNamespace: l.switchNamespace,
      clientNamespace: l.clientNamespace,
      nats,
      coordinator,
      hosts,
    });
    progress('waiting for nats-server, the coordinator and every agent');
    await o.waitReady(l, o.hosts, 60_000);
    return await labStatus();
  } catch (err) {
    const logs = ['nats', 'coordinator', 'agent-h1']
      .map((n) => `--- ${n}.log ---\n${tailOf(path.join(l.dir, 'logs', `${n}.log`))}`)
      .join('\n');
    await labDown();
    const e = FerryError.from(err);
    throw new FerryError(e.code === ErrorCode.Internal ? ErrorCode.Lab : e.code, `lab up failed: ${e.message}\n${logs}`, { cause: err });
  }
}

export async function labStatus(): Promise<LabStatus> {
  const l = labLayout();
  const s = readState(l.dir);
  const procStatus = (p: StartedProcess | undefined) => ({ pid: p?.pid ?? null, running: p ? isRunning(p) : false });
  const up = s !== null && (await namespaceExists(l.switchNamespace));
  return {
    name: l.name,
    up,
    dir: l.dir,
    natsUrl: l.natsUrl,
    switchNamespace: l.switchNamespace,
    clientNamespace: l.clientNamespace,
    nats: procStatus(s?.nats),
    coordinator: procStatus(s?.coordinator),
    coordinator2: s?.coordinator2 ? procStatus(s.coordinator2) : null,
    hosts: (s?.hosts ?? []).map((h) => ({
      name: h.name,
      namespace: h.namespace,
      address: h.address,
      agent: { pid: h.agent.pid, running: isRunning(h.agent), log: h.agent.log },
    })),
  };
}

export interface DownReport {
  name: string;
  stoppedProcesses: number;
  removedNamespaces: string[];
  removedDir: boolean;
}

export async function labDown(): Promise<DownReport> {
  const l = labLayout();
  const s = readState(l.dir);
  let stopped = 0;
  if (s) {
    // Daemons first, gracefully, so that they leave NATS cleanly; the server last.
    for (const p of [s.coordinator, ...(s.coordinator2 ? [s.coordinator2] : []), ...s.hosts.map((h) => h.agent), s.nats]) {
      if (isRunning(p)) stopped++;
      await stopProcess(p);
    }
  }
  const namespaces = await labNamespaces(l);
  const leftovers = [...new Set([...labProcessesInNamespaces(l.name, namespaces), ...labCgroupProcesses(l)])];
  await killAll(leftovers);
  await removeNamespaces(namespaces);
  removeLabCgroups(l);
  const hadDir = readState(l.dir) !== null || namespaces.length > 0;
  rmSync(l.dir, { recursive: true, force: true });
  return { name: l.name, stoppedProcesses: stopped + leftovers.length, removedNamespaces: namespaces, removedDir: hadDir };
}
