// Where everything of a lab lives: names, addresses and paths, derived from the lab's name
// alone so that `lab down` can find all of it again after a crash.
//
// Topology (every box is a network namespace; nothing is created in the machine's own). Two
// networks that do not route to each other: the fabric (10.77/16), where workloads live, and the
// management network (10.78.0/24), where NATS, the coordinators and the agents' control
// connections live. No namespace forwards between them, so a workload cannot reach NATS.
//
//                                       ferry-<lab>-sw: bridge sw0 (fabric, no address)
//   ferry-<lab>-client  eth0 10.77.0.2 ──sw0      bridge mgmt0 10.78.0.1 (coordinators)
//                       mgmt 10.78.0.2 ──mgmt0
//   ferry-<lab>-nats1..3 mgmt 10.78.0.3-5 ──mgmt0   (one nats-server each: a 3-node cluster)
//   ferry-<lab>-h1  br0 10.77.0.11 ─uplink── sw0    (br0 also takes h1's workloads' veths)
//                   mgmt 10.78.0.11 ──────── mgmt0  (the agent's address)
//
// Workloads live in namespaces ferry-<lab>-w-<name> with addresses from 10.77.1.1 up (allocated
// by the coordinator), their veths' host ends in their host's br0: one flat L2 segment.
import path from 'node:path';
import type { WorkloadSubnet } from '../../shared/subnet.ts';

export const LAB_SUBNET_PREFIX = '10.77';
export const LAB_PREFIX_LEN = 16;
export const MGMT_SUBNET_PREFIX = '10.78.0';
export const MGMT_PREFIX_LEN = 24;
export const NATS_PORT = 4222;
export const NATS_ROUTE_PORT = 6222;
export const NATS_MONITOR_PORT = 8222;
/** Prometheus endpoints (docs/metrics.md): each agent on its management address, the coordinators on the switch's. */
export const AGENT_METRICS_PORT = 7411;
export const COORDINATOR_METRICS_PORTS = { coordinator: 7412, coordinator2: 7413 } as const;
/** The coordinators' dashboards (docs/dashboard.md) on the control address: `coordinator` here, `coordinator2` on the next port. */
export const DASHBOARD_PORT = 7480;
/** nats-server nodes of every lab: enough for JetStream to keep a quorum with one of them down. */
export const NATS_NODES = 3;
export const MAX_HOSTS = 50;

/** What `lab kill` and `lab start` take. */
export const DAEMONS_HELP = `coordinator, coordinator2, nats-1..nats-${NATS_NODES} or a host name (its agent)`;

export interface LabLayout {
  name: string;
  dir: string;
  switchNamespace: string;
  clientNamespace: string;
  /** The coordinators' address on the management network (switch namespace). */
  controlAddress: string;
  clientAddress: string;
  clientMgmtAddress: string;
  /** Every nats-server's client URL, comma-joined (what `--nats` takes). */
  natsUrl: string;
  natsUrls: string[];
  /** nats-server n (1..NATS_NODES): lab daemon name nats-<n>, namespace, address. */
  natsName(n: number): string;
  natsNamespace(n: number): string;
  natsAddress(n: number): string;
  hostNamespace(i: number): string;
  hostName(i: number): string;
  /** The host's management address: where its agent connects from and its peers reach it. */
  hostAddress(i: number): string;
  /** The host's address on the workload fabric (its br0). */
  hostFabricAddress(i: number): string;
  /** Where a coordinator's dashboard listens (its HTTPS URL is https://<this>/). */
  dashboardListen(daemon: 'coordinator' | 'coordinator2'): string;
  /** Workload network namespaces: ferry-<lab>-w-<workload>. */
  workloadNetnsPrefix: string;
  /** The lab-wide scrape token (mode 0600) every daemon's metrics endpoint asks for. */
  metricsTokenFile: string;
  /** Where a daemon's metrics endpoint listens (ADDRESS:PORT), reached from the client namespace like NATS. */
  coordinatorMetricsListen(daemon: keyof typeof COORDINATOR_METRICS_PORTS): string;
  /** The coordinators' workload subnet: the fabric's prefix, addresses from .1.1 up (.0.x is the lab's own). */
  workloadNetwork: WorkloadSubnet;
}

export function labName(): string {
  const name = process.env.FERRY_LAB ?? 'lab';
  if (!/^[a-z0-9]{1,12}$/.test(name)) throw new Error(`FERRY_LAB must be 1-12 characters of a-z and 0-9, got "${name}"`);
  return name;
}

export function labLayout(name = labName()): LabLayout {
  const root = process.env.FERRY_LAB_ROOT ?? '/var/tmp/ferry';
  const ns = (suffix: string) => `ferry-${name}-${suffix}`;
  const controlAddress = `${MGMT_SUBNET_PREFIX}.1`;
  const natsAddress = (n: number) => `${MGMT_SUBNET_PREFIX}.${2 + n}`;
  const natsUrls = Array.from({ length: NATS_NODES }, (_, k) => `tls://${natsAddress(k + 1)}:${NATS_PORT}`);
  return {
    name,
    dir: path.join(root, name),
    switchNamespace: ns('sw'),
    clientNamespace: ns('client'),
    controlAddress,
    clientAddress: `${LAB_SUBNET_PREFIX}.0.2`,
    clientMgmtAddress: `${MGMT_SUBNET_PREFIX}.2`,
    natsUrl: natsUrls.join(','),
    natsUrls,
    natsName: (n) => `nats-${n}`,
    natsNamespace: (n) => ns(`nats${n}`),
    natsAddress,
    hostNamespace: (i) => ns(`h${i}`),
    hostName: (i) => `h${i}`,
    hostAddress: (i) => `${MGMT_SUBNET_PREFIX}.${10 + i}`,
    hostFabricAddress: (i) => `${LAB_SUBNET_PREFIX}.0.${10 + i}`,
    dashboardListen: (daemon) => `${controlAddress}:${DASHBOARD_PORT + (daemon === 'coordinator' ? 0 : 1)}`,
    workloadNetnsPrefix: ns('w-'),
    metricsTokenFile: path.join(root, name, 'metrics.token'),
    coordinatorMetricsListen: (daemon) => `${controlAddress}:${COORDINATOR_METRICS_PORTS[daemon]}`,
    workloadNetwork: {
      subnet: `${LAB_SUBNET_PREFIX}.0.0/${LAB_PREFIX_LEN}`,
      first: `${LAB_SUBNET_PREFIX}.1.1`,
      // The fabric's own addresses (the switch's, the client's, every host's bridge) are never a workload's.
      reserved: [`${LAB_SUBNET_PREFIX}.0.1`, `${LAB_SUBNET_PREFIX}.0.2`, ...Array.from({ length: MAX_HOSTS }, (_, k) => `${LAB_SUBNET_PREFIX}.0.${11 + k}`)],
    },
  };
}

/** Where the agent of the host with management address `address` serves its metrics. */
export const agentMetricsListen = (address: string): string => `${address}:${AGENT_METRICS_PORT}`;

/** The URL a metrics endpoint listening on `listen` answers at. */
export const metricsUrl = (listen: string): string => `http://${listen}/metrics`;

/** Every namespace whose name says it belongs to this lab (also workload namespaces added later). */
export const belongsToLab = (name: string, nsName: string): boolean => nsName.startsWith(`ferry-${name}-`);
