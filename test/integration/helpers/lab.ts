// A lab of its own for each integration test file, through the real `ferry lab` commands.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll } from 'vitest';
import type { LabStatus } from '../../../deploy/lab/lab.ts';
import type { HostView } from '../../../shared/protocol.ts';
import { ferry, ferryJson } from './cli.ts';

/** Brings the lab up fresh: whatever a crashed earlier run left under its name goes first. */
export async function freshLab(env: NodeJS.ProcessEnv, hosts = 2): Promise<LabStatus> {
  await ferry(['lab', 'down'], env);
  return ferryJson<LabStatus>(['lab', 'up', '--hosts', String(hosts)], env);
}

/** For a describe block that needs nothing else: a fresh lab before its tests, removed after them. */
export function useLab(env: NodeJS.ProcessEnv, hosts = 2): void {
  beforeAll(async () => {
    await freshLab(env, hosts);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
  });
}

/** Polls the coordinator's cluster view (`ferry hosts`) until `ok` holds; an answer also means a coordinator leads. */
export async function untilHosts(env: NodeJS.ProcessEnv, what: string, ok: (hosts: HostView[]) => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await ferry(['hosts', '--json'], env);
    if (r.code === 0 && ok(JSON.parse(r.stdout) as HostView[])) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}: ${r.stderr}`);
    await sleep(200);
  }
}

/** Every agent alive in the coordinator's view. */
export const allAlive = (env: NodeJS.ProcessEnv, timeoutMs?: number): Promise<void> => untilHosts(env, 'every agent is alive', (hs) => hs.every((h) => h.alive), timeoutMs);

/** A test file's own lab; FERRY_TEST_LAB_SUFFIX lets two checkouts run the same file side by side. */
export const labEnv = (name: string): { FERRY_LAB: string } => ({ FERRY_LAB: `${name}${process.env.FERRY_TEST_LAB_SUFFIX ?? ''}` });
