// Progress on a person's terminal: lines that stay (phases, rounds, the outcome) and one line of
// live progress that is redrawn in place. A log file or pipe gets the live line as plain lines,
// at most one per `everyMsOffTerminal`, so that a long round does not flood it.
export interface StatusOut {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class StatusLines {
  #live = false;
  #lastLiveAt = -Infinity;

  constructor(
    private readonly out: StatusOut = process.stderr,
    private readonly everyMsOffTerminal = 2_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A line that stays: it replaces the live line, if one is shown. */
  line(text: string): void {
    this.#clear();
    this.out.write(`${text}\n`);
  }

  /** The live line: redrawn in place on a terminal (cut to its width, or the redraw would wrap). */
  live(text: string): void {
    if (this.out.isTTY) {
      const width = Math.max(10, (this.out.columns ?? 80) - 1);
      this.out.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
      this.#live = true;
      return;
    }
    const t = this.now();
    if (t - this.#lastLiveAt < this.everyMsOffTerminal) return;
    this.#lastLiveAt = t;
    this.out.write(`${text}\n`);
  }

  /** Ends the live line, keeping what it said last. */
  end(): void {
    if (this.#live) this.out.write('\n');
    this.#live = false;
  }

  #clear(): void {
    if (!this.#live) return;
    this.out.write('\r\x1b[2K');
    this.#live = false;
  }
}
