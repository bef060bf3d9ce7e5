// The payload of a page frame (the protocol is described in pages.ts): a run table, 16 bytes a
// run (u32 addr low, u32 addr high, u32 pages, u32 flags: bit 0 = zero run, no data), then the
// data pages of the data runs in order. Shared by the sender and the receiver, with the checks
// both apply to the data.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { addressOf } from '../ffi/libc.ts';
import { xxh3 } from '../ffi/xxhash.ts';
import { type DirtyRun, PAGE } from '../engine/memory/dirty/types.ts';
/**
 * Lets timers and I/O run (heartbeats, NATS) at least this often while a round streams: frames
 * the kernel takes at once resolve without ever leaving the microtask queue, and a multi-GiB
 * round would otherwise hold the agent's event loop for seconds (its host then looks lost).
 */
export const YIELD_MS = 20;

export class Yielder {
  #last = performance.now();
  async maybe(): Promise<void> {
    if (performance.now() - this.#last < YIELD_MS) return;
    await new Promise<void>((r) => setImmediate(r));
    this.#last = performance.now();
  }
}

export const ENTRY = 16;
export const MAX_ENTRIES = 2048;
export const TABLE_BYTES = MAX_ENTRIES * ENTRY;
/** What a frame costs against the window besides its payload (prefix + JSON header, roughly). */
export const FRAME_OVERHEAD = 256;
export const TWO32 = 2 ** 32;
export const ZERO_PAGE = Buffer.alloc(PAGE);

export interface Entry {
  addr: number;
  pages: number;
  zero: boolean;
}

/** Writes a run table right-aligned into buf[0, TABLE_BYTES); returns its first byte's offset. */
export function writeTable(buf: Buffer, entries: readonly Entry[]): number {
  const start = TABLE_BYTES - entries.length * ENTRY;
  writeEntries(buf, start, entries);
  return start;
}

export function writeEntries(buf: Buffer, start: number, entries: readonly Entry[]): void {
  entries.forEach((e, i) => {
    const o = start + i * ENTRY;
    buf.writeUInt32LE(e.addr % TWO32, o);
    buf.writeUInt32LE(Math.floor(e.addr / TWO32), o + 4);
    buf.writeUInt32LE(e.pages, o + 8);
    buf.writeUInt32LE(e.zero ? 1 : 0, o + 12);
  });
}

export function readTable(payload: Buffer, n: number): Entry[] {
  if (n * ENTRY > payload.length) throw new FerryError(ErrorCode.BadMessage, `page frame: ${n} runs do not fit ${payload.length} bytes`);
  const out: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const o = i * ENTRY;
    const addr = payload.readUInt32LE(o) + payload.readUInt32LE(o + 4) * TWO32;
    const pages = payload.readUInt32LE(o + 8);
    if (addr % PAGE !== 0 || pages === 0) throw new FerryError(ErrorCode.BadMessage, `page frame: bad run ${addr}/${pages}`);
    out.push({ addr, pages, zero: (payload.readUInt32LE(o + 12) & 1) === 1 });
  }
  return out;
}

export const checksum = (data: Buffer): string | undefined => {
  const fn = xxh3();
  return fn && data.length > 0 ? fn(Number(addressOf(data)), data.length).toString(16) : undefined;
};

/** Whether a page is all zeros: one word decides for almost every page with data. */
export function isZeroPage(buf: Buffer, off: number): boolean {
  if (buf.readUInt32LE(off) !== 0 || buf.readUInt32LE(off + PAGE - 4) !== 0) return false;
  return buf.compare(ZERO_PAGE, 0, PAGE, off, off + PAGE) === 0;
}

/** Splits a process's runs into frames: at most `frameBytes` of data and MAX_ENTRIES runs each. */
export function* frameRuns(runs: readonly DirtyRun[], frameBytes: number): Generator<Entry[]> {
  let cur: Entry[] = [];
  let data = 0;
  const flush = function* () {
    if (cur.length) yield cur;
    cur = [];
    data = 0;
  };
  for (const r of runs) {
    if (r.zero) {
      if (cur.length >= MAX_ENTRIES) yield* flush();
      cur.push({ addr: r.addr, pages: r.pages, zero: true });
      continue;
    }
    for (let a = r.addr, left = r.pages; left > 0; ) {
      if (cur.length >= MAX_ENTRIES || data >= frameBytes) yield* flush();
      const take = Math.min(left, (frameBytes - data) / PAGE);
      cur.push({ addr: a, pages: take, zero: false });
      data += take * PAGE;
      a += take * PAGE;
      left -= take;
    }
  }
  yield* flush();
}
