// Fault points for fault-injection tests, in the manner of CRIU's CRIU_FAULT. A daemon started
// with FERRY_FAULT=<point>[=sleep:<ms>][,...] kills itself with SIGKILL on reaching a named point
// (or, with `=sleep:<ms>`, stalls there), so a test can stop an agent or the coordinator at an
// exact step of a migration, or hold one step while it kills another daemon. Unset, it costs a
// map lookup. Points: `agent:<step>:before|after` (a migration step of an agent, before doing it
// / done but not yet answered), `coordinator:<actor>:before|after` (a phase actor of the
// statechart, before calling out / finished but not yet recorded).
// A point may name a workload (`agent:freeze:after@web=sleep:3000`): it then fires only for steps
// of that workload's migrations, so one daemon can be armed once for several test scenarios.
// Corruption points are not crash points: they make the destination damage what it restored so
// that a test can see verification catch it (faultArmed): `agent:restore:corrupt-byte` flips
// one byte of a restored page (as it lands in a live migration; after the memory is written in
// a cold restore), `agent:restore:corrupt-flag` flips the root process's SIGUSR2 disposition
// after the tree is built. `agent:admit:ignore-locks` makes a destination skip its preflight
// check of the tree's file locks, standing in for a lock it could not see (taken after the
// preflight), so that a test reaches a restore that cannot take the lock and must roll back.
// A stall ends early once the file named by FERRY_FAULT_RELEASE exists (the daemon removes it as
// it goes on): a test releases the held step as soon as what it did meanwhile has been seen,
// rather than waiting out the whole stall.
import { existsSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** FERRY_FAULT's points and their actions (crash, or sleep:<ms>). */
export const parseFaults = (spec: string): ReadonlyMap<string, string> =>
  new Map(
    spec
      .split(',')
      .filter(Boolean)
      .map((f) => {
        const [point = '', action = 'crash'] = f.split('=');
        return [point, action] as const;
      }),
  );

/** The action armed at a point for a step of `workload`: the workload's own first, else the point's. */
export const faultAction = (faults: ReadonlyMap<string, string>, point: string, workload?: string): string | undefined =>
  (workload === undefined ? undefined : faults.get(`${point}@${workload}`)) ?? faults.get(point);

const faults = parseFaults(process.env.FERRY_FAULT ?? '');

export async function faultPoint(point: string, workload?: string): Promise<void> {
  const action = faultAction(faults, point, workload);
  if (action === undefined) return;
  const ms = /^sleep:(\d+)$/.exec(action)?.[1];
  if (ms !== undefined) {
    process.stderr.write(`FERRY_FAULT: stalling ${ms} ms at ${point}\n`);
    await stall(Number(ms), process.env.FERRY_FAULT_RELEASE);
    return;
  }
  process.stderr.write(`FERRY_FAULT: crashing at ${point}\n`);
  process.kill(process.pid, 'SIGKILL');
}

/** Sleeps `ms`, or less if the release file appears (polled: the stall is a test's, not a hot path). */
async function stall(ms: number, release: string | undefined): Promise<void> {
  if (!release) return sleep(ms);
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (existsSync(release)) {
      rmSync(release, { force: true });
      process.stderr.write('FERRY_FAULT: released\n');
      return;
    }
    await sleep(Math.min(50, deadline - Date.now()));
  }
}

/** The workload a step is about: an agent step's request names it, a coordinator actor's input holds it. */
function workloadOf(arg: unknown): string | undefined {
  const a = arg as { workload?: unknown; input?: { workload?: { name?: unknown } } } | null;
  const name = typeof a?.workload === 'string' ? a.workload : a?.input?.workload?.name;
  return typeof name === 'string' ? name : undefined;
}

/** Wraps an async step with fault points before it and after it. */
export function withFaultPoints<A extends unknown[], R>(prefix: string, fn: (...args: A) => Promise<R> | R): (...args: A) => Promise<R> {
  return async (...args: A) => {
    const workload = workloadOf(args[0]);
    await faultPoint(`${prefix}:before`, workload);
    // A coordinator's phase given up while it was held here (AGENT_LOST, a timeout) does not start
    // its work, as it would not have without the stall.
    if ((args[0] as { signal?: AbortSignal } | null)?.signal?.aborted) throw new Error(`${prefix}: abandoned while held at its fault point`);
    const out = await fn(...args);
    await faultPoint(`${prefix}:after`, workload);
    return out;
  };
}

/** Whether a corruption point is armed (any action: corruption points never crash). */
export const faultArmed = (point: string): boolean => faults.has(point);
