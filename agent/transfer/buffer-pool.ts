// Large buffers used again instead of allocated per frame. Every new multi-MiB Buffer is memory
// outside V8's heap, and V8 answers that much of it with full mark-compact collections: a 1 GiB
// page stream in 1 MiB frames cost some 60 of them on each side (the receiver's main thread
// spent more time collecting than writing pages). A pool holds a few buffers that went back.

export class BufferPool {
  readonly #free: Buffer[] = [];
  #freeBytes = 0;

  constructor(
    /** Capacity of a new buffer at least (so a pool serves frames of varying size alike). */
    private readonly minBytes: number,
    /** Bytes kept idle at most; buffers given back beyond it are left to the GC. */
    private readonly keepBytes: number,
  ) {}

  /** A buffer of exactly `n` bytes (uninitialised): a view of a pooled one, or new. */
  take(n: number): Buffer {
    const i = this.#free.findIndex((b) => b.length >= n);
    if (i >= 0) {
      const b = this.#free.splice(i, 1)[0]!;
      this.#freeBytes -= b.length;
      return b.subarray(0, n);
    }
    return Buffer.allocUnsafeSlow(Math.max(n, this.minBytes)).subarray(0, n);
  }

  /** Takes back a buffer from take(): the caller and everyone it lent it to are done with it. */
  give(view: Buffer): void {
    const whole = Buffer.from(view.buffer, view.byteOffset, view.buffer.byteLength - view.byteOffset);
    if (this.#freeBytes + whole.length > this.keepBytes) return;
    this.#free.push(whole);
    this.#freeBytes += whole.length;
  }
}
