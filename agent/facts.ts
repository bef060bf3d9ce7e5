// Gathers the facts this agent reports about its host. Kernel features are probed once at
// start (agent/probes.ts); memory is read again for every heartbeat.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { HostFacts, KernelFeatures } from '../shared/facts.ts';
import { probeKernel } from './engine/probes.ts';
import { controllerLayouts, hostLayout } from './cgroups/layout.ts';
import { hostMemory } from './host-memory.ts';

export const AGENT_VERSION = '0.1.0';

function cpuModel(): string {
  const line = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('model name'));
  return line?.split(':')[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
}

export interface FactsSource {
  /** Current facts; memory is fresh on every call, the rest is fixed for the agent's life. */
  current(): HostFacts;
}

export async function gatherFacts(name: string, address: string, dataStream: HostFacts['dataStream'] = null): Promise<FactsSource> {
  const probes = await probeKernel();
  const features: KernelFeatures = {
    uffdWpAsync: probes.uffdWpAsync,
    pagemapScan: probes.pagemapScan,
    softDirty: probes.softDirty,
    clone3SetTid: probes.clone3SetTid,
    sealedSystemMappings: probes.sealedSystemMappings,
    timeNamespaces: probes.timeNamespaces,
    cgroup2Freezer: probes.cgroup2Freezer,
    ptrace: probes.ptrace,
  };
  const fixed = {
    name,
    hostname: os.hostname(),
    address,
    kernel: { release: os.release(), version: os.version(), arch: os.machine() },
    cpu: { model: cpuModel(), count: os.availableParallelism(), xsave: probes.xsave },
    features,
    agent: { version: AGENT_VERSION, pid: process.pid, startedAt: new Date().toISOString() },
    dataStream,
    cgroups: controllerLayouts(hostLayout()),
  };
  return { current: () => ({ ...fixed, memory: hostMemory() }) };
}
