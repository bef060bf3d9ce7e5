// What an agent remembers of each migration it takes part in, on disk, so that a restarted
// agent can still answer every later step (thaw, discard, resume, cleanup) and refuse stale ones.
// Each file is validated when read (shared/records.ts LocalMigrationRecord); one that fails is
// set aside (agent/quarantine.ts) and the migration is unknown here from then on.
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { NetnsConfig } from '../../shared/netns.ts';
import { LocalMigrationRecord, parseRecord } from '../../shared/records.ts';
import type { WorkloadResources } from '../../shared/resources.ts';
import type { HeldFreeze } from '../engine/process/freeze.ts';
import type { HeldTree } from '../engine/process/hold.ts';
import { setAsideFile } from '../quarantine.ts';
import type { ThrottleRecord } from './throttle.ts';

export interface LocalMigration {
  id: string;
  role: 'source' | 'destination';
  workload: string;
  peer: string;
  /** Set once the migration was rolled back here: later steps of it are refused. */
  fenced: boolean;
  /** Results of completed steps by idempotency key: a replay returns them again. */
  done: Record<string, unknown>;
  /** Source: the frozen tree (host pids, cgroups), to thaw or end it even after a restart. */
  held: HeldFreeze | null;
  /** Where this side keeps the image. */
  imageDir: string;
  /** Destination: the restored tree's root pid, once it runs. */
  restoredPid: number | null;
  /** The source agent's registry entry of the workload, carried to the destination's registry. */
  workloadCommand: string[] | null;
  /** Source: the workload's own network namespace (locked at the freeze) and its configuration. */
  netns?: string | null;
  netConfig?: NetnsConfig | null;
  /** Destination: the name of the namespace rebuilt here, to remove on rollback. */
  landing?: string | null;
  /** Source: pre-copy rounds ran (live migration); the session lives in the agent's memory only. */
  precopy?: boolean;
  /** Both: the switchover left pages for post-copy (source: its frozen tree holds the only copy; destination: only this agent's session can resume the tree). */
  postcopy?: boolean;
  /** Source: the CPU throttle put on the workload during pre-copy, to undo even after a restart. */
  throttle?: ThrottleRecord | null;
  /** Destination: the tree was built (or is being built) during pre-copy (warm restore). */
  warm?: boolean;
  /** Destination: the built tree, held frozen for the commit so that it outlives the agent. */
  heldTree?: HeldTree | null;
  /** The workload's limits and requests (destination: admitted in preflight; source: at the freeze). */
  resources?: WorkloadResources | null;
}

export class MigrationRecords {
  readonly #dir: string;

  constructor(stateDir: string) {
    this.#dir = path.join(stateDir, 'migrations');
    mkdirSync(this.#dir, { recursive: true });
  }

  imageDir(id: string): string {
    return path.join(this.#dir, `${id}.image`);
  }

  get(id: string): LocalMigration | null {
    return this.#read(`${id}.json`);
  }

  /** A record file, validated; a bad one is set aside and reads as absent. */
  #read(file: string): LocalMigration | null {
    const f = path.join(this.#dir, file);
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      return null;
    }
    const parsed = parseRecord(LocalMigrationRecord, text);
    if (parsed.ok && `${parsed.value.id}.json` === file) return parsed.value as LocalMigration;
    setAsideFile(this.#dir, file, parsed.ok ? `it names migration ${parsed.value.id}` : parsed.reason, 'the migration is unknown on this host from now on: its later steps start afresh or are refused');
    return null;
  }

  save(m: LocalMigration): void {
    const f = path.join(this.#dir, `${m.id}.json`);
    writeFileSync(`${f}.tmp`, JSON.stringify(m, null, 2));
    renameSync(`${f}.tmp`, f);
  }

  all(): LocalMigration[] {
    return readdirSync(this.#dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => this.#read(f))
      .filter((m): m is LocalMigration => m !== null);
  }
}
