// How far the round a source is sending got, for the coordinator (subjects.migrationProgress):
// once when the round starts, then at most every PROGRESS_EVERY_MS while its pages go. A round
// of a GiB takes seconds; without this, `ferry status` and `watch` would sit still meanwhile.
// Best effort: a report that cannot be published is dropped, never a reason to fail the round.
import { PROGRESS_EVERY_MS, type TransferProgress } from '../../shared/migration.ts';
import type { SentSoFar } from '../transfer/pages.ts';

/** Where a source's reports go (agent/main.ts publishes them on NATS). */
export type ProgressSink = (p: TransferProgress) => void;

export class RoundProgress {
  readonly #t0 = performance.now();
  #last = 0;

  constructor(
    private readonly sink: ProgressSink | null,
    private readonly round: Pick<TransferProgress, 'migrationId' | 'phase' | 'round' | 'pagesTotal'>,
  ) {
    this.#emit({ pages: 0, bytesRaw: 0, bytesOnWire: 0 });
  }

  /** What the page sender reports after each frame. */
  readonly frame = (sofar: SentSoFar): void => {
    if (performance.now() - this.#last >= PROGRESS_EVERY_MS) this.#emit(sofar);
  };

  #emit(sofar: SentSoFar): void {
    if (!this.sink) return;
    this.#last = performance.now();
    try {
      this.sink({
        ...this.round,
        pagesDone: Math.min(sofar.pages, this.round.pagesTotal),
        bytesRaw: sofar.bytesRaw,
        bytesOnWire: sofar.bytesOnWire,
        elapsedMs: Math.round(this.#last - this.#t0),
      });
    } catch {
      // the connection to NATS is down for a moment: the next report says it all
    }
  }
}
