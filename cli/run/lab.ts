// `ferry lab ...`, loaded when it runs (cli/commands/lab.ts defines it).
import { labKill, labStart } from '../../deploy/lab/daemons.ts';
import { labDown, labStatus, labUp, type LabStatus } from '../../deploy/lab/lab.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostsOfLab, waitForAgent, waitForLab } from '../cluster.ts';
import { labLayout } from '../../deploy/lab/layout.ts';
import { table } from '../format.ts';
import { printResult } from '../output.ts';

function renderStatus(s: LabStatus): string {
  if (!s.up) return `lab "${s.name}" is down`;
  const mark = (running: boolean) => (running ? 'running' : 'STOPPED');
  return [
    `lab "${s.name}" is up (state in ${s.dir})`,
    ...s.natsServers.map((n) => `  ${n.name.padEnd(12)}  ${n.url}  ${mark(n.running)}  pid ${n.pid}  (namespace ${n.namespace})`),
    `  coordinator   ${mark(s.coordinator.running)}  pid ${s.coordinator.pid}  (namespace ${s.switchNamespace})  metrics ${s.coordinator.metricsUrl}  dashboard ${s.coordinator.dashboardUrl}`,
    ...(s.coordinator2 ? [`  coordinator2  ${mark(s.coordinator2.running)}  pid ${s.coordinator2.pid}  metrics ${s.coordinator2.metricsUrl}  dashboard ${s.coordinator2.dashboardUrl}`] : []),
    `  client        namespace ${s.clientNamespace}`,
    `  metrics       token in ${s.metricsTokenFile}; scrape from the client namespace:`,
    `                ip netns exec ${s.clientNamespace} curl -H "Authorization: Bearer $(cat ${s.metricsTokenFile})" ${s.coordinator.metricsUrl}`,
    '',
    table(
      ['HOST', 'NAMESPACE', 'ADDRESS', 'FABRIC ADDRESS', 'AGENT', 'CORDONED', 'METRICS'],
      s.hosts.map((h) => [
        h.name,
        h.namespace,
        h.address,
        h.fabricAddress,
        `${mark(h.agent.running)} (pid ${h.agent.pid})`,
        h.cordoned === undefined || h.cordoned === null ? '?' : h.cordoned ? 'yes' : 'no',
        h.agent.metricsUrl,
      ]),
    ),
  ].join('\n');
}

export async function up(opts: { hosts: number; json?: boolean }): Promise<void> {
  const status = await labUp({
    hosts: opts.hosts,
    waitReady: waitForLab,
    onProgress: opts.json ? undefined : (m) => process.stderr.write(`lab: ${m}\n`),
  });
  printResult(!!opts.json, status, renderStatus);
}

/** How long `lab status` waits for the coordinator to say which hosts are cordoned. */
const CORDONS_WAIT_MS = 1_500;

export async function status(opts: { json?: boolean }): Promise<void> {
  const s = await labStatus();
  const running = s.up && (s.coordinator.running || !!s.coordinator2?.running);
  const view = running ? await Promise.race([hostsOfLab(labLayout()).catch(() => null), sleep(CORDONS_WAIT_MS).then(() => null)]) : null;
  const withCordons = { ...s, hosts: s.hosts.map((h) => ({ ...h, cordoned: view?.find((v) => v.name === h.name)?.cordoned ?? null })) };
  printResult(!!opts.json, withCordons, renderStatus);
}

export async function down(opts: { json?: boolean }): Promise<void> {
  const r = await labDown();
  printResult(!!opts.json, r, (v) =>
    v.removedNamespaces.length || v.stoppedProcesses
      ? `lab "${v.name}" removed: ${v.stoppedProcesses} processes stopped, namespaces ${v.removedNamespaces.join(', ') || 'none'}`
      : `lab "${v.name}" was not up; nothing to remove`,
  );
}

export async function kill(daemon: string, opts: { json?: boolean }): Promise<void> {
  const r = await labKill(daemon);
  printResult(!!opts.json, r, (v) => (v.pid === null ? `${v.daemon} was not running` : `${v.daemon} (pid ${v.pid}) killed`));
}

const AGENT_READY_MS = 30_000;

export async function start(daemon: string, opts: { env: Record<string, string>; json?: boolean; wait: boolean }): Promise<void> {
  const r = labStart(daemon, opts.env);
  // An agent is back once the coordinator sees this very process alive (until then the view may
  // still show its predecessor); without a coordinator running nobody can say, so it returns at once.
  const s = await labStatus();
  const isAgent = s.hosts.some((h) => h.name === daemon);
  const waited = opts.wait && isAgent && (s.coordinator.running || !!s.coordinator2?.running);
  if (waited) await waitForAgent(labLayout(), daemon, r.pid, AGENT_READY_MS);
  printResult(!!opts.json, { ...r, alive: waited ? true : null }, (v) => `${v.daemon} started (pid ${v.pid})${v.alive ? ', alive in the coordinator\'s view' : ''}`);
}
