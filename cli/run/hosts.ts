// `ferry hosts`, loaded when it runs (cli/commands/hosts.ts defines it).
import type { HostView } from '../../shared/protocol.ts';
import { askCoordinator, withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { printResult } from '../output.ts';

function renderHosts(hosts: HostView[]): string {
  if (hosts.length === 0) return 'no hosts registered';
  const features = (h: HostView) =>
    Object.entries(h.facts.features)
      .filter(([, on]) => on)
      .map(([k]) => k)
      .join(',');
  return table(
    ['HOST', 'STATE', 'ADDRESS', 'KERNEL', 'CPUS', 'XSAVE', 'MEM AVAIL', 'FEATURES'],
    hosts.map((h) => [
      h.name,
      `${h.alive ? 'alive' : 'LOST'}${h.cordoned ? ',cordoned' : ''}`,
      h.facts.address,
      h.kernel,
      String(h.facts.cpu.count),
      h.facts.cpu.xsave ? `${h.facts.cpu.xsave.xcr0}/${h.facts.cpu.xsave.xstateSize}B` : '-',
      bytes(h.facts.memory.availableBytes),
      features(h),
    ]),
  );
}

export async function hosts(opts: { json?: boolean; nats?: string }): Promise<void> {
  const hs = await withCluster(opts, (nc) => askCoordinator(nc, 'hosts', {}));
  printResult(!!opts.json, hs, renderHosts);
}
