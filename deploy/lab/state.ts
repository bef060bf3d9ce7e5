// The lab's record of what it started (lab.json in the lab directory).
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
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
  const tmp = stateFile(dir) + '.tmp';
  writeFileSync(tmp, JSON.stringify(s, null, 2));
  renameSync(tmp, stateFile(dir));
}
