// Sources' reports of the round they are sending (agent/migration/progress.ts), on
// subjects.migrationProgress(host): each is checked like any message off the network (its schema
// here; its host, migration and round in MigrationManager.noteProgress) and shown to the
// migration's watchers. NATS lets an agent report under its own host name only.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../shared/log.ts';
import { type MigrationView, TransferProgress } from '../shared/migration.ts';
import { decode } from '../shared/rpc.ts';
import { progressHost, subjects } from '../shared/subjects.ts';
import type { MigrationManager } from './migrations.ts';

export function followProgress(nc: NatsConnection, migrations: Pick<MigrationManager, 'noteProgress'>, log: Logger): Subscription {
  return nc.subscribe(subjects.migrationProgressAll, {
    callback: (err, m) => {
      if (err) return;
      const host = progressHost(m.subject);
      let p: TransferProgress;
      try {
        p = decode(TransferProgress, m.data, `progress report on ${m.subject}`);
      } catch (e) {
        log.warn({ subject: m.subject, err: (e as Error).message }, 'progress report dropped');
        return;
      }
      // Late (the round ended), not the migration's source, or of one another coordinator drives: nothing to show.
      if (host && !migrations.noteProgress(host, p)) log.debug({ host, migration: p.migrationId, round: p.round }, 'progress report not taken');
    },
  });
}

type Report = NonNullable<MigrationView['inFlight']>;

/**
 * Whether a report describes the round under way now: its phase matches the statechart's state
 * (`precopy`; `freeze` or `transfer` for the last delta, which starts with the freeze; `resume` or
 * `cleanup` for what a post-copy switchover left), and it is the round after the last one that ended.
 */
export function underWay(p: Report, state: string, roundsEnded: number): boolean {
  const phase = state.split('.')[0];
  const phaseNow = p.phase === 'precopy' ? phase === 'precopy' : p.phase === 'postcopy' ? phase === 'resume' || phase === 'cleanup' : phase === 'freeze' || phase === 'transfer';
  return phaseNow && p.round === roundsEnded + 1 && p.pagesDone <= p.pagesTotal;
}

/**
 * Whether a migration takes a report that came from `host`: only from its source, for the round
 * under way, and never winding that round's figures back (a late report after a newer one).
 */
export function takesProgress(host: string, p: Report, now: { source: string; state: string; roundsEnded: number; last: Report | null }): boolean {
  if (host !== now.source || !underWay(p, now.state, now.roundsEnded)) return false;
  const l = now.last;
  return !(l && l.phase === p.phase && l.round === p.round && (l.bytesRaw > p.bytesRaw || l.pagesDone > p.pagesDone));
}
