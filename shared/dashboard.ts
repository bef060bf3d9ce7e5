// The coordinator's web dashboard (coordinator/dashboard/): the JSON the page reads over HTTPS
// (the login link `ferry dashboard` asks for is DashboardLogin in protocol.ts). The page validates every document
// with these same schemas (it is bundled with them), so a page and a coordinator of different
// versions fail loudly instead of drawing something wrong.
import { z } from 'zod';
import { FleetJob } from './fleet.ts';
import { MigrationView } from './migration.ts';
import { MigrationEventWire } from './migration-events.ts';
import { HostName } from './names.ts';
import { HostView } from './protocol.ts';
import { IsoTime } from './time.ts';
import { WorkloadListing } from './workload.ts';

/** CPU use of a host's workloads, from two heartbeats' cgroup CPU counters; null until two were seen. */
export const HostLoad = z.strictObject({ host: HostName, cpusUsed: z.number().nonnegative().nullable() });
export type HostLoad = z.infer<typeof HostLoad>;

/** What the page shows: GET /api/state, and the `state` events of GET /api/events. */
export const DashboardState = z.strictObject({
  coordinator: z.strictObject({ id: z.string(), leading: z.boolean() }),
  at: IsoTime,
  hosts: z.array(HostView),
  loads: z.array(HostLoad),
  workloads: WorkloadListing,
  /** In flight first, then the latest ended ones (newest first). */
  migrations: z.array(MigrationView),
  /** Drains and rebalances, newest first. */
  fleet: z.array(FleetJob),
});
export type DashboardState = z.infer<typeof DashboardState>;

/** `migration` events of GET /api/events: one migration event as the coordinator published it. */
export const DashboardMigrationEvent = MigrationEventWire;
