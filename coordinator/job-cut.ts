// The barrier of a job's cut: its members go through the same stages, and no member leaves a
// stage before every one has finished it. A failure anywhere fails the stage for all of them,
// with the first failure as the cause (the member and step it names).
import { FerryError } from '../shared/errors.ts';

export class Cut {
  #stage = 0;
  #arrived = 0;
  #waiters: { resolve: () => void; reject: (e: FerryError) => void }[] = [];
  #failure: FerryError | null = null;

  constructor(private readonly members: number) {}

  get firstFailure(): FerryError | null {
    return this.#failure;
  }

  /** Whether `n` stages were passed by every member. */
  passed(n: number): boolean {
    return this.#stage >= n;
  }

  /** Runs this member's part of the next stage, then waits until every member's part is done. */
  async through(what: string, part: () => Promise<void>): Promise<void> {
    if (this.#failure) throw this.#stopped();
    try {
      await part();
    } catch (err) {
      this.fail(new FerryError(FerryError.from(err).code, `${what}: ${FerryError.from(err).message}`, { cause: err }));
      throw err;
    }
    if (this.#failure) throw this.#stopped();
    await new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      if (++this.#arrived === this.members) {
        this.#stage++;
        this.#arrived = 0;
        const go = this.#waiters;
        this.#waiters = [];
        for (const w of go) w.resolve();
      }
    });
  }

  fail(err: FerryError): void {
    if (this.#failure) return;
    this.#failure = err;
    const stop = this.#waiters;
    this.#waiters = [];
    for (const w of stop) w.reject(this.#stopped());
  }

  #stopped(): FerryError {
    return new FerryError(this.#failure!.code, `stopped by another member: ${this.#failure!.message}`, { cause: this.#failure });
  }
}
