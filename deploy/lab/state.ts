// The lab's record of what it started (lab.json in the lab directory).
import { closeSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const Proc = z.strictObject({ pid: z.number().int(), marker: z.string(), log: z.string() });

export const LabState = z.strictObject({
  version: z.literal(1),
  name: z.string(),
  createdAt: z.string(),
  natsUrl: z.string(),
  switchNamespace: z.string(),
  clientNamespace: z.string(),
  /** The lab's nats-server nodes (lab daemons nats-1..3), each in a namespace of its own. */
  natsServers: z.array(Proc.extend({ name: z.string(), namespace: z.string(), url: z.string(), config: z.string() })),
  coordinator: Proc,
  /** A standby coordinator, when one was started. */
  coordinator2: Proc.optional(),
  hosts: z.array(
    z.strictObject({ name: z.string(), namespace: z.string(), address: z.string(), fabricAddress: z.string(), agentConfig: z.string(), agent: Proc }),
  ),
});
export type LabState = z.infer<typeof LabState>;

export const stateFile = (dir: string) => path.join(dir, 'lab.json');

export function readState(dir: string): LabState | null {
  try {
    return LabState.parse(JSON.parse(readFileSync(stateFile(dir), 'utf8')));
  } catch {
    return null;
  }
}

export function writeState(dir: string, s: LabState): void {
  const tmp = `${stateFile(dir)}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s, null, 2));
  renameSync(tmp, stateFile(dir));
}

/** A lock older than this was left by a command that died holding it. */
const STALE_LOCK_MS = 30_000;

/**
 * Runs `fn` holding the lab's state lock (an exclusively created lock file), so that two `lab
 * start`/`lab kill` commands run side by side cannot each write back a record without the
 * other's change (which once left an agent running that the record no longer knew).
 */
export function withStateLock<T>(dir: string, fn: () => T): T {
  const lock = path.join(dir, 'lab.lock');
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) unlinkSync(lock);
      } catch {
        // released meanwhile
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  try {
    return fn();
  } finally {
    unlinkSync(lock);
  }
}
