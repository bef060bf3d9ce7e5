// `ferry dashboard`, loaded when it runs (cli/commands/dashboard.ts defines it).
import type { DashboardLogin } from '../../shared/protocol.ts';
import { askCoordinator, withCluster, type ClusterOptions } from '../cluster.ts';
import { printResult } from '../output.ts';

const render = (l: DashboardLogin): string =>
  [
    `open this link once, before ${l.expiresAt} (it logs your browser in and is then used up):`,
    `  ${l.url}`,
    `dashboard of ${l.coordinator}: ${l.dashboardUrl} (its certificate is from the cluster's CA)`,
  ].join('\n');

export async function dashboard(opts: ClusterOptions & { json?: boolean }): Promise<void> {
  const login = await withCluster(opts, (nc) => askCoordinator(nc, 'dashboard', {}));
  printResult(!!opts.json, login, render);
}
