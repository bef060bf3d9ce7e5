// The agent's CPU priority during a switchover. The workload is frozen (or not yet running on
// the destination) for as long as this agent's work takes, so that work must not wait behind a
// busy host's other work; outside the switchover the agent runs at its normal priority, so that
// pre-copy rounds do not take CPU from the workload they track. Every thread of the agent is
// raised (TLS, the reading thread and the libuv pool do switchover work too) and put back after.
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** Nice value during a switchover (the agent is root: it may lower its nice value). */
export const SWITCHOVER_NICE = -10;

let holds = 0;
let base: number | null = null;

function setEveryThread(nice: number): void {
  for (const t of readdirSync('/proc/self/task')) {
    try {
      setPriority(Number(t), nice);
    } catch {
      // a thread that ended meanwhile
    }
  }
}

/**
 * Raises every thread of this agent until the returned function is called (once; later calls do
 * nothing), or at the latest after `maxMs` (a migration whose coordinator never comes back must
 * not leave the agent raised). Holds nest: the priority goes back when the last one ends. An agent
 * started at a priority above this already is left as it is.
 */
export function raiseForSwitchover(maxMs = 60_000): () => void {
  if (holds++ === 0) {
    base = getPriority(0);
    if (base > SWITCHOVER_NICE) setEveryThread(SWITCHOVER_NICE);
  }
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    if (--holds > 0 || base === null) return;
    if (base > SWITCHOVER_NICE) setEveryThread(base);
    base = null;
  };
  const timer = setTimeout(end, maxMs);
  timer.unref();
  return end;
}
