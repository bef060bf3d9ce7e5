// Where everything of a lab lives: names, addresses and paths, derived from the lab's name
// alone so that `lab down` can find all of it again after a crash.
//
// Topology (every box is a network namespace; nothing is created in the machine's own):
//
//   ferry-<lab>-client  eth0 10.77.0.2 ─┐
//                                         ├─ ferry-<lab>-sw: bridge sw0 10.77.0.1 (NATS, coordinator)
//   ferry-<lab>-h1  br0 10.77.0.11 ─uplink─┤
//   ferry-<lab>-h2  br0 10.77.0.12 ─uplink─┘   (each host's br0 also takes its workloads' veths)
//
// Workloads live in namespaces ferry-<lab>-w-<name> with addresses from 10.77.1.1 up (allocated
// by the coordinator), their veths' host ends in their host's br0: one flat L2 segment.
import path from 'node:path';
import type { WorkloadSubnet } from '../../shared/subnet.ts';

export const LAB_SUBNET_PREFIX = '10.77';
export const LAB_PREFIX_LEN = 16;
export const NATS_PORT = 4222;
export const NATS_MONITOR_PORT = 8222;
export const MAX_HOSTS = 50;

/** What `lab kill` and `lab start` take. */
export const DAEMONS_HELP = 'coordinator, coordinator2 or a host name (its agent)';

export interface LabLayout {
  name: string;
  dir: string;
  switchNamespace: string;
  clientNamespace: string;
  controlAddress: string;
  clientAddress: string;
  natsUrl: string;
  hostNamespace(i: number): string;
  hostName(i: number): string;
  hostAddress(i: number): string;
  /** Workload network namespaces: ferry-<lab>-w-<workload>. */
  workloadNetnsPrefix: string;
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
  const controlAddress = `${LAB_SUBNET_PREFIX}.0.1`;
  return {
    name,
    dir: path.join(root, name),
    switchNamespace: ns('sw'),
    clientNamespace: ns('client'),
    controlAddress,
    clientAddress: `${LAB_SUBNET_PREFIX}.0.2`,
    natsUrl: `nats://${controlAddress}:${NATS_PORT}`,
    hostNamespace: (i) => ns(`h${i}`),
    hostName: (i) => `h${i}`,
    hostAddress: (i) => `${LAB_SUBNET_PREFIX}.0.${10 + i}`,
    workloadNetnsPrefix: ns('w-'),
    workloadNetwork: { subnet: `${LAB_SUBNET_PREFIX}.0.0/${LAB_PREFIX_LEN}`, first: `${LAB_SUBNET_PREFIX}.1.1`, reserved: [controlAddress, `${LAB_SUBNET_PREFIX}.0.2`] },
  };
}

/** Every namespace whose name says it belongs to this lab (also workload namespaces added later). */
export const belongsToLab = (name: string, nsName: string): boolean => nsName.startsWith(`ferry-${name}-`);
