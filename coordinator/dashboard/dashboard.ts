// The dashboard as a coordinator runs it: the server on the configured address with this
// coordinator's identity, fed by what the coordinator keeps and by the migration events on NATS
// (published by whichever coordinator leads, so a standby's page is live too).
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { CoordinatorConfig } from '../../shared/config.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { MigrationEventWire } from '../../shared/migration-events.ts';
import type { DashboardLogin } from '../../shared/protocol.ts';
import { decode } from '../../shared/rpc.ts';
import { subjects } from '../../shared/subjects.ts';
import { isoTime } from '../../shared/time.ts';
import type { ClusterView } from '../cluster.ts';
import type { Fleet } from '../fleet/fleet.ts';
import type { LeaderLease } from '../lease.ts';
import type { MigrationManager } from '../migrations.ts';
import type { MigrationStore } from '../store.ts';
import type { WorkloadDirectory } from '../workloads.ts';
import { DashboardServer } from './server.ts';
import type { DashboardSources } from './state.ts';

export interface CoordinatorParts {
  id: string;
  nc: NatsConnection;
  lease: LeaderLease;
  cluster: ClusterView;
  workloads: WorkloadDirectory;
  migrations: MigrationManager;
  store: MigrationStore;
  fleet: Fleet;
  log: Logger;
}

const sourcesOf = (p: CoordinatorParts): DashboardSources => ({
  coordinatorId: p.id,
  leading: () => p.lease.held,
  hosts: () => p.cluster.hosts(),
  workloads: () => p.workloads.list(),
  migrationIds: () => p.store.ids(),
  migration: (id) => p.migrations.view(id),
  fleet: () => p.fleet.executor.list(),
});

export class CoordinatorDashboard {
  #sub: Subscription | null = null;

  private constructor(
    private readonly server: DashboardServer,
    private readonly p: CoordinatorParts,
  ) {}

  /** Starts the dashboard the config asks for; null when it asks for none. A config it cannot serve is refused (no plain HTTP fallback). */
  static async start(config: CoordinatorConfig, p: CoordinatorParts): Promise<CoordinatorDashboard | null> {
    const d = config.dashboard;
    if (!d) return null;
    const tls = d.tls ?? config.nats.tls;
    if (!tls) throw new FerryError(ErrorCode.BadConfig, 'dashboard: no certificate to serve HTTPS with: give dashboard.tls or nats.tls');
    const colon = d.listen.lastIndexOf(':');
    const listen = { host: d.listen.slice(0, colon), port: Number(d.listen.slice(colon + 1)) };
    const server = new DashboardServer({
      listen,
      publicUrl: (d.publicUrl ?? `https://${d.listen}`).replace(/\/+$/, ''),
      tls,
      sessionTtlMs: d.sessionTtlMs,
      sources: sourcesOf(p),
      log: p.log,
    });
    await server.start();
    const dash = new CoordinatorDashboard(server, p);
    dash.#follow();
    return dash;
  }

  /** A one-time login link (the `dashboard` endpoint of the coordinator service). */
  login(): DashboardLogin {
    const l = this.server.login();
    return { url: l.url, dashboardUrl: l.dashboardUrl, expiresAt: isoTime(l.expiresAt), coordinator: this.p.id };
  }

  #follow(): void {
    const sub = this.p.nc.subscribe(subjects.migrationEventsAll);
    this.#sub = sub;
    void (async () => {
      for await (const m of sub) {
        try {
          this.server.migrationEvent(decode(MigrationEventWire, m.data, `event on ${m.subject}`));
        } catch (err) {
          this.p.log.warn({ err: (err as Error).message }, 'dashboard: migration event dropped');
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.#sub?.unsubscribe();
    await this.server.stop();
  }
}
