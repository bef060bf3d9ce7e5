// What the agents' downtime predictions miss, learned from completed live migrations. The source
// predicts from costs it measured itself (freeze, state, the last delta over the link it
// measured); the coordinator's round trips between the switchover's steps and the destination's
// build are not in them. Each completed live migration adds its miss (actual downtime minus the
// agents' prediction) to an exponentially weighted mean per destination host, which later
// predictions to that host include. Kept in the leader's memory: a new leader learns again.

/** Weight of the newest migration in the mean. */
const ALPHA = 0.3;
/** A miss beyond this (ms) is an outlier (a stalled host), not the fixed cost the mean is for. */
const BOUND_MS = 5_000;

export class DowntimeMiss {
  readonly #byHost = new Map<string, number>();

  /** One completed migration to `host`: the agents predicted `predictedMs`, it took `actualMs`. */
  note(host: string, predictedMs: number, actualMs: number): void {
    if (!Number.isFinite(predictedMs) || !Number.isFinite(actualMs) || actualMs <= 0) return;
    const miss = Math.max(-BOUND_MS, Math.min(BOUND_MS, actualMs - predictedMs));
    const prev = this.#byHost.get(host);
    this.#byHost.set(host, prev === undefined ? miss : prev + ALPHA * (miss - prev));
  }

  /** What to add to the agents' prediction for a migration to `host` (0 before any). */
  forHost(host: string): number {
    return Math.round((this.#byHost.get(host) ?? 0) * 10) / 10;
  }
}
