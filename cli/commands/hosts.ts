// `ferry hosts`: the coordinator's view of the cluster.
import type { Command } from 'commander';
import { coordinatorApi, type HostView } from '../../shared/protocol.ts';
import { call } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import { withCluster } from '../cluster.ts';
import { bytes, table } from '../format.ts';
import { action, printResult } from '../output.ts';

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
      h.alive ? 'alive' : 'LOST',
      h.facts.address,
      h.kernel,
      String(h.facts.cpu.count),
      h.facts.cpu.xsave ? `${h.facts.cpu.xsave.xcr0}/${h.facts.cpu.xsave.xstateSize}B` : '-',
      bytes(h.facts.memory.availableBytes),
      features(h),
    ]),
  );
}

export function registerHosts(program: Command): void {
  program
    .command('hosts')
    .description('list the hosts in the cluster with their facts and liveness')
    .option('--json', 'print as JSON')
    .option('--nats <url>', 'NATS server URL(s), comma-separated (default: FERRY_NATS_URL or the local lab)')
    .action(
      action(async (opts: { json?: boolean; nats?: string }) => {
        const hosts = await withCluster(opts, (nc) => call(nc, subjects.coordinator('hosts'), coordinatorApi.hosts, {}));
        printResult(!!opts.json, hosts, renderHosts);
      }),
    );
}
