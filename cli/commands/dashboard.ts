// `ferry dashboard`: a one-time login link to the leading coordinator's web dashboard.
import type { Command } from 'commander';
import { action } from '../output.ts';
import { natsOpt } from './options.ts';

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description("a one-time login link to the leading coordinator's read-only web dashboard (good for one use, for a minute; see docs/dashboard.md)")
    .option('--json', 'print as JSON: url (the link, a secret until used), dashboardUrl, expiresAt, coordinator')
    .option(...natsOpt)
    .action(action(async (opts: { json?: boolean; nats?: string }) => (await import('../run/dashboard.ts')).dashboard(opts)));
}
