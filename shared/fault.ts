// Fault points for fault-injection tests, in the manner of CRIU's CRIU_FAULT. A daemon started
// with FERRY_FAULT=<point>[=sleep:<ms>][,...] kills itself with SIGKILL on reaching a named point
// (or, with `=sleep:<ms>`, stalls there), so a test can stop an agent or the coordinator at an
// exact step of a migration, or hold one step while it kills another daemon. Unset, it costs a
// map lookup. Points: `agent:<step>:before|after` (a migration step of an agent, before doing it
// / done but not yet answered), `coordinator:<actor>:before|after` (a phase actor of the
// statechart, before calling out / finished but not yet recorded).
// Corruption points are not crash points: they make the destination damage what it restored so
// that a test can see verification catch it (faultArmed): `agent:restore:corrupt-byte` flips
// one byte of a restored page (as it lands in a live migration; after the memory is written in
// a cold restore), `agent:restore:corrupt-flag` flips the root process's SIGUSR2 disposition
// after the tree is built.
import { setTimeout as sleep } from 'node:timers/promises';

const faults = new Map(
  (process.env.FERRY_FAULT ?? '')
    .split(',')
    .filter(Boolean)
    .map((f) => {
      const [point = '', action = 'crash'] = f.split('=');
      return [point, action] as const;
    }),
);

export async function faultPoint(point: string): Promise<void> {
  const action = faults.get(point);
  if (action === undefined) return;
  const ms = /^sleep:(\d+)$/.exec(action)?.[1];
  if (ms !== undefined) {
    process.stderr.write(`FERRY_FAULT: stalling ${ms} ms at ${point}\n`);
    await sleep(Number(ms));
    return;
  }
  process.stderr.write(`FERRY_FAULT: crashing at ${point}\n`);
  process.kill(process.pid, 'SIGKILL');
}

/** Wraps an async step with fault points before it and after it. */
export function withFaultPoints<A extends unknown[], R>(prefix: string, fn: (...args: A) => Promise<R> | R): (...args: A) => Promise<R> {
  return async (...args: A) => {
    await faultPoint(`${prefix}:before`);
    const out = await fn(...args);
    await faultPoint(`${prefix}:after`);
    return out;
  };
}

/** Whether a corruption point is armed (any action: corruption points never crash). */
export const faultArmed = (point: string): boolean => faults.has(point);
