// The local lab: several ferry hosts on one machine. `up` builds the fabric and the management
// network, issues every identity, starts a 3-node nats-server cluster, the coordinator and one
// agent per host, and returns once every host is registered and alive;
// `down` removes everything a lab made, also after a crash, and is safe to run twice.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { hostLayout } from '../../agent/cgroups/layout.ts';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { AgentConfig } from '../../shared/config.ts';
import { natsServerConfig } from '../pki/nats-auth.ts';
import { LAB_PREFIX_LEN, MAX_HOSTS, NATS_MONITOR_PORT, NATS_NODES, NATS_PORT, NATS_ROUTE_PORT, agentMetricsListen, labLayout, metricsUrl, type LabLayout } from './layout.ts';
import { issueLabIdentities, labNatsAccess, labNatsIdentity, labPkiDir } from './pki.ts';
import { buildFabric, labNamespaces, namespaceExists, removeNamespaces } from './network.ts';
import { natsConfigFile, startAgent, startCoordinator, startNats } from './daemons.ts';
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
  /** The nats-server cluster's nodes (`ferry lab kill|start nats-N`). */
  natsServers: { name: string; url: string; namespace: string; pid: number; running: boolean }[];
  /**
   * The scrape token (mode 0600) of every daemon's metricsUrl. The endpoints are on the management
   * network: scrape from the client namespace (`ip netns exec <clientNamespace> curl ...`).
   */
  metricsTokenFile: string;
  /** dashboardUrl: its web dashboard (log in with `ferry dashboard`; reached from the client namespace). */
  coordinator: CoordinatorStatus;
  /** The standby coordinator, once `ferry lab start coordinator2` started one. */
  coordinator2: CoordinatorStatus | null;
  /** The first coordinator's dashboard (docs/dashboard.md). */
  dashboardUrl: string;
  /** address: the host's management address (its agent's); fabricAddress: its address on the workloads' fabric. */
  hosts: {
    name: string;
    namespace: string;
    address: string;
    fabricAddress: string;
    agent: { pid: number; running: boolean; log: string; metricsUrl: string };
    /** As the leading coordinator says (`ferry cordon`); null when no coordinator answered (only `lab status` asks). */
    cordoned?: boolean | null;
  }[];
}

function writeNatsConfigs(l: LabLayout, authFile: string): void {
  const pki = labPkiDir(l);
  for (let n = 1; n <= NATS_NODES; n++) {
    const id = labNatsIdentity(n);
    const conf = natsServerConfig({
      serverName: `ferry-${l.name}-${l.natsName(n)}`,
      clusterName: `ferry-${l.name}`,
      host: l.natsAddress(n),
      clientPort: NATS_PORT,
      routePort: NATS_ROUTE_PORT,
      monitorPort: NATS_MONITOR_PORT,
      routes: Array.from({ length: NATS_NODES }, (_, k) => `nats-route://${l.natsAddress(k + 1)}:${NATS_ROUTE_PORT}`).filter((_, k) => k + 1 !== n),
      storeDir: path.join(l.dir, 'nats', `store-${n}`),
      tls: { ca: path.join(pki, 'ca.crt'), cert: path.join(pki, `${id}.crt`), key: path.join(pki, `${id}.key`) },
      authFile: path.relative(path.dirname(natsConfigFile(l, n)), authFile),
    });
    writeFileSync(natsConfigFile(l, n), conf);
  }
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
    // One token for the whole lab, read by every daemon at its start (and by whoever scrapes).
    writeFileSync(l.metricsTokenFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    progress(`building fabric and management network: switch, client, ${NATS_NODES} nats nodes and ${o.hosts} hosts; issuing identities`);
    const [{ authFile }] = await Promise.all([Promise.resolve().then(() => issueLabIdentities(l, o.hosts, NATS_NODES)), buildFabric(l, o.hosts)]);
    writeNatsConfigs(l, authFile);
    const natsServers = Array.from({ length: NATS_NODES }, (_, k) => ({
      name: l.natsName(k + 1),
      namespace: l.natsNamespace(k + 1),
      url: l.natsUrls[k]!,
      config: natsConfigFile(l, k + 1),
      ...startNats(l, k + 1),
    }));
    const coordinator = startCoordinator(l, 'coordinator');

    const hosts: LabState['hosts'] = [];
    for (let i = 1; i <= o.hosts; i++) {
      const name = l.hostName(i);
      const agentConfig = path.join(l.dir, 'agents', `${name}.json`);
      const cfg: Partial<AgentConfig> = {
        name,
        address: l.hostAddress(i),
        nats: labNatsAccess(l, `agent.${name}`),
        tls: labNatsAccess(l, `agent.${name}`).tls,
        stateDir: path.join(l.dir, 'agents', name),
        cgroupParent: labCgroupParent(l, name),
        // Workloads carry the lab's mark too, so that `lab down` ends them even after a crash.
        workloadEnv: { [LAB_MEMBER_ENV]: l.name },
        // Workload namespaces are named like the lab's own, so `lab down` removes them too.
        network: { bridge: 'br0', prefixLen: LAB_PREFIX_LEN, netnsPrefix: l.workloadNetnsPrefix },
        metrics: { listen: agentMetricsListen(l.hostAddress(i)), tokenFile: l.metricsTokenFile },
      };
      writeFileSync(agentConfig, JSON.stringify(cfg, null, 2));
      const host = { name, namespace: l.hostNamespace(i), address: l.hostAddress(i), fabricAddress: l.hostFabricAddress(i), agentConfig };
      hosts.push({ ...host, agent: startAgent(l, host) });
    }
    writeState(l.dir, {
      version: 1,
      name: l.name,
      createdAt: new Date().toISOString(),
      natsUrl: l.natsUrl,
      switchNamespace: l.switchNamespace,
      clientNamespace: l.clientNamespace,
      natsServers,
      coordinator,
      hosts,
    });
    progress('waiting for nats-server, the coordinator and every agent');
    await o.waitReady(l, o.hosts, 60_000);
    return await labStatus();
  } catch (err) {
    const logs = [l.natsName(1), 'coordinator', 'agent-h1']
      .map((n) => `--- ${n}.log ---\n${tailOf(path.join(l.dir, 'logs', `${n}.log`))}`)
      .join('\n');
    await labDown();
    const e = FerryError.from(err);
    throw new FerryError(e.code === ErrorCode.Internal ? ErrorCode.Lab : e.code, `lab up failed: ${e.message}\n${logs}`, { cause: err });
  }
}

const dashboardUrl = (l: LabLayout, daemon: 'coordinator' | 'coordinator2'): string => `https://${l.dashboardListen(daemon)}/`;

export async function labStatus(): Promise<LabStatus> {
  const l = labLayout();
  const s = readState(l.dir);
  const procStatus = (p: StartedProcess | undefined, daemon: 'coordinator' | 'coordinator2'): CoordinatorStatus => ({
    pid: p?.pid ?? null,
    running: p ? isRunning(p) : false,
    log: p?.log ?? null,
    metricsUrl: metricsUrl(l.coordinatorMetricsListen(daemon)),
    dashboardUrl: dashboardUrl(l, daemon),
  });
  const up = s !== null && (await namespaceExists(l.switchNamespace));
  return {
    name: l.name,
    up,
    dir: l.dir,
    natsUrl: l.natsUrl,
    switchNamespace: l.switchNamespace,
    clientNamespace: l.clientNamespace,
    natsServers: (s?.natsServers ?? []).map((n) => ({ name: n.name, url: n.url, namespace: n.namespace, pid: n.pid, running: isRunning(n) })),
    metricsTokenFile: l.metricsTokenFile,
    coordinator: procStatus(s?.coordinator, 'coordinator'),
    coordinator2: s?.coordinator2 ? procStatus(s.coordinator2, 'coordinator2') : null,
    dashboardUrl: dashboardUrl(l, 'coordinator'),
    hosts: (s?.hosts ?? []).map((h) => ({
      name: h.name,
      namespace: h.namespace,
      address: h.address,
      fabricAddress: h.fabricAddress,
      agent: { pid: h.agent.pid, running: isRunning(h.agent), log: h.agent.log, metricsUrl: metricsUrl(agentMetricsListen(h.address)) },
    })),
  };
}

/** log: its log file (pino JSON lines). */
export interface CoordinatorStatus {
  pid: number | null;
  running: boolean;
  log: string | null;
  metricsUrl: string;
  dashboardUrl: string;
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
    for (const p of [s.coordinator, ...(s.coordinator2 ? [s.coordinator2] : []), ...s.hosts.map((h) => h.agent), ...s.natsServers]) {
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
