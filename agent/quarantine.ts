// Where an agent puts a record file that failed its schema: into `quarantine/` beside it, under
// its own name and the time it was found, so that it no longer takes part and a new record of
// the same name can be written. Reported on the `ferry:records` diagnostics channel (the daemon
// logs it and publishes it on NATS). Never throws.
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { RecordSetAside } from '../shared/records.ts';

export const recordsChannel = diagnostics_channel.channel('ferry:records');

/** Moves `dir/file` aside; returns where it went (null if it could not be moved). */
export function setAsideFile(dir: string, file: string, reason: string, effect: string | null = null): string | null {
  let movedTo: string | null = path.join(dir, 'quarantine', `${file}.${new Date().toISOString().replace(/[:.]/g, '-')}`);
  try {
    mkdirSync(path.dirname(movedTo), { recursive: true });
    renameSync(path.join(dir, file), movedTo);
  } catch {
    movedTo = null;
  }
  const event: RecordSetAside = { type: 'record.setAside', store: 'disk', where: dir, key: file, reason, movedTo, effect, by: 'agent', at: Date.now() };
  recordsChannel.publish(event);
  return movedTo;
}
