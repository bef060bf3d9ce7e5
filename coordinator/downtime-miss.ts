// What the agents' downtime predictions miss, learned from completed live migrations. The source
// predicts from costs it measured itself (freeze, state, the last delta over the link it
// measured); the coordinator's round trips between the switchover's steps and the destination's
// build are not in them. Each completed live migration adds its miss (actual downtime minus the
// agents' prediction) to an exponentially weighted mean per destination host and workload size
// class, which later predictions to that host include. By size, because what the prediction
// misses grows with the workload (measured, bench/migrate.ts: about +100 ms for 1 GiB, about
// -20 ms for a few MiB): one mean for all let a 1 GiB migration's miss inflate the next small
// workload's prediction twofold. Kept in the leader's memory: a new leader learns again.

/** Weight of the newest migration in the mean. */
const ALPHA = 0.3;
/** A miss beyond this (ms) is an outlier (a stalled host), not the fixed cost the mean is for. */
const BOUND_MS = 5_000;

/**
 * Size classes a factor of 4 apart: under 4 MiB, 4-16 MiB, 16-64 MiB, ... 1-4 GiB, from 4 GiB
 * on. A class with no migration yet borrows from the class next to it (a factor of 4 off at
 * most), never from one further away.
 */
export function sizeClass(workloadBytes: number): number {
  const mib = Math.max(1, workloadBytes / (1 << 20));
  return Math.min(6, Math.floor(Math.log2(mib) / 2));
}

export class DowntimeMiss {
  /** Mean miss by `${host} ${sizeClass}`. */
  readonly #means = new Map<string, number>();

  /** One completed migration of a workload of `workloadBytes` to `host`: the agents predicted `predictedMs`, it took `actualMs`. */
  note(host: string, workloadBytes: number, predictedMs: number, actualMs: number): void {
    if (!Number.isFinite(predictedMs) || !Number.isFinite(actualMs) || actualMs <= 0 || !Number.isFinite(workloadBytes)) return;
    const miss = Math.max(-BOUND_MS, Math.min(BOUND_MS, actualMs - predictedMs));
    const key = `${host} ${sizeClass(workloadBytes)}`;
    const prev = this.#means.get(key);
    this.#means.set(key, prev === undefined ? miss : prev + ALPHA * (miss - prev));
  }

  /** What to add to the agents' prediction for a workload of `workloadBytes` moving to `host` (0 before any like it). */
  forHost(host: string, workloadBytes: number): number {
    const c = sizeClass(workloadBytes);
    const own = this.#means.get(`${host} ${c}`);
    const near = [this.#means.get(`${host} ${c - 1}`), this.#means.get(`${host} ${c + 1}`)].filter((v): v is number => v !== undefined);
    const mean = own ?? (near.length > 0 ? near.reduce((a, b) => a + b, 0) / near.length : 0);
    return Math.round(mean * 10) / 10;
  }
}
