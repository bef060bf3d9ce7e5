// The memory page stream of a pre-copy migration, over the agent-to-agent DataConnection.
//
// Frames (payload layout below):
//   pages-round {round, exited}            a round starts; processes that exited
//   pages       {pid, n, enc, raw, sum?}   n runs + their data; enc 'raw' | 'lz4'
//   fork        {pid, n}                   the receiver makes the process now, from its parent as
//                                          it stands; the n runs (a run table) are the pages it
//                                          inherits there, shared copy-on-write
//   pages-end   {round, frames, pages, zero}
//   pages-done                              the stream ends (the connection stays usable)
// and back from the receiver:
//   pages-credit {upTo}                     window bytes consumed (applied) so far
//   pages-ack {round, pages, zero}          the round is applied
//   pages-done-ack
// A `pages` payload is a run table, 16 bytes a run (u32 addr low, u32 addr high, u32 pages,
// u32 flags: bit 0 = zero run, no data), followed by the data pages of the data runs in order,
// lz4-compressed when enc is 'lz4'. `raw` is the uncompressed data length and `sum` its XXH3-64
// (hex) when the sender has libxxhash.
//
// Memory stays bounded on both sides: the sender has at most one frame being built plus
// `windowBytes` of frames the receiver has not applied yet (credits are sent after applying, so
// a slow receiver holds the sender end to end); the receiver handles one frame at a time.
import { compressSync, uncompressSync } from 'lz4-napi';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { addressOf } from '../ffi/libc.ts';
import { xxh3 } from '../ffi/xxhash.ts';
import { readPages } from '../engine/dirty/read.ts';
import { type DirtyRound, type DirtyRun, PAGE, type ProcessDirty, type Span } from '../engine/dirty/types.ts';
import { O, closeFd, openFile } from '../ffi/syscalls.ts';
import { CompressionPolicy, type CompressionMode, type CompressionState } from './compression.ts';
import type { PageSink } from './page-sinks.ts';
import type { Frame } from './frames.ts';
import type { DataConnection } from './stream.ts';

/**
 * Lets timers and I/O run (heartbeats, NATS) at least this often while a round streams: frames
 * the kernel takes at once resolve without ever leaving the microtask queue, and a multi-GiB
 * round would otherwise hold the agent's event loop for seconds (its host then looks lost).
 */
const YIELD_MS = 20;

class Yielder {
  #last = performance.now();
  async maybe(): Promise<void> {
    if (performance.now() - this.#last < YIELD_MS) return;
    await new Promise<void>((r) => setImmediate(r));
    this.#last = performance.now();
  }
}

const ENTRY = 16;
const MAX_ENTRIES = 2048;
const TABLE_BYTES = MAX_ENTRIES * ENTRY;
/** What a frame costs against the window besides its payload (prefix + JSON header, roughly). */
const FRAME_OVERHEAD = 256;
const TWO32 = 2 ** 32;
const ZERO_PAGE = Buffer.alloc(PAGE);

export interface PageStreamOptions {
  compression?: CompressionMode;
  /** Data bytes per frame (default 1 MiB). */
  frameBytes?: number;
  /** Unapplied bytes allowed in flight (default 16 MiB). */
  windowBytes?: number;
}

/** Per-round figures of the stream, named like the coordinator's RoundStats where they mean the same. */
export interface PageRoundStats {
  round: number;
  processes: number;
  /** Data pages that went over the wire. */
  pagesSent: number;
  /** Zero pages (an address each, no data), including data pages found to be all zeros. */
  zeroPages: number;
  /** Pages that could not be read (unmapped between scan and send). */
  pagesSkipped: number;
  /** Uncompressed page bytes, and what the stream carried for the round (frames, headers, tables). */
  bytesRaw: number;
  bytesOnWire: number;
  /** bytesRaw / page payload bytes on the wire (1 without compression). */
  compressionRatio: number;
  frames: number;
  lz4Frames: number;
  durationMs: number;
  /** bytesOnWire per second of the round. */
  bandwidthBps: number;
  /** Most window bytes sent but not yet applied by the receiver at any moment (<= windowBytes). */
  peakInflightBytes: number;
  compression: CompressionState;
}

/**
 * How a live migration streams one round (precopy-cow.ts): in which order the processes go, and,
 * right before each one's frames (those of every process before it are read by then), whether
 * the receiver forks it first and which of its runs still go.
 */
export interface RoundPlan {
  order: readonly ProcessDirty[];
  prepare(p: ProcessDirty): { fork: boolean; runs: readonly DirtyRun[]; inherit?: readonly Span[] };
  /** Pages are read through /proc/PID/mem, which leaves pages shared copy-on-write shared (readPages). */
  keepShared: boolean;
}

interface Entry {
  addr: number;
  pages: number;
  zero: boolean;
}

/** Writes a run table right-aligned into buf[0, TABLE_BYTES); returns its first byte's offset. */
function writeTable(buf: Buffer, entries: readonly Entry[]): number {
  const start = TABLE_BYTES - entries.length * ENTRY;
  writeEntries(buf, start, entries);
  return start;
}

function writeEntries(buf: Buffer, start: number, entries: readonly Entry[]): void {
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

const checksum = (data: Buffer): string | undefined => {
  const fn = xxh3();
  return fn && data.length > 0 ? fn(Number(addressOf(data)), data.length).toString(16) : undefined;
};

/** Whether a page is all zeros: one word decides for almost every page with data. */
function isZeroPage(buf: Buffer, off: number): boolean {
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

interface FrameStats {
  frames: number;
  lz4Frames: number;
  pagesSent: number;
  zeroPages: number;
  pagesSkipped: number;
  bytesRaw: number;
  payload: number;
  peakInflight: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

export class PageSender {
  private readonly policy: CompressionPolicy;
  private readonly frameBytes: number;
  private readonly windowBytes: number;
  private sent = 0; // window bytes sent
  private credited = 0; // window bytes the receiver applied
  private readonly inflight: Array<{ upTo: number; raw: number }> = [];
  private creditWaiter: Waiter | null = null;
  private readonly acks = new Map<number, { pages: number; zero: number }>();
  private ackWaiter: { round: number; w: Waiter } | null = null;
  private doneWaiter: Waiter | null = null;
  private failure: Error | null = null;
  private reading = false;
  private finished = false;
  private readonly pool: Buffer[] = [];

  constructor(
    private readonly conn: DataConnection,
    opts: PageStreamOptions = {},
  ) {
    this.policy = new CompressionPolicy(opts.compression ?? 'auto');
    this.frameBytes = Math.max(PAGE, Math.floor((opts.frameBytes ?? 1 << 20) / PAGE) * PAGE);
    // A credit comes back at least every frame, so two frames of window can never deadlock.
    this.windowBytes = Math.max(opts.windowBytes ?? 16 << 20, 2 * (this.frameBytes + TABLE_BYTES + FRAME_OVERHEAD));
  }

  get compression(): CompressionState {
    return this.policy.state;
  }

  /** Bytes of frames that may be in flight unapplied. */
  get window(): number {
    return this.windowBytes;
  }

  /**
   * Sends one round: reads each dirty run from its (live) process now and streams it. Pages
   * found all-zero go as zero runs; `noteSent` tells the tracker what went (content trackers
   * key on it). Resolves once the receiver acknowledged the whole round as applied.
   */
  async sendRound(round: DirtyRound, noteSent?: (pid: number, addr: number, data: Buffer) => void, plan?: RoundPlan): Promise<PageRoundStats> {
    if (this.finished) throw new FerryError(ErrorCode.Internal, 'page stream already finished');
    this.startReader();
    const t0 = performance.now();
    const wire0 = this.conn.bytesSent;
    this.policy.resume(t0);
    const st: FrameStats = { frames: 0, lz4Frames: 0, pagesSent: 0, zeroPages: 0, pagesSkipped: 0, bytesRaw: 0, payload: 0, peakInflight: 0 };
    await this.conn.send({ t: 'pages-round', round: round.round, exited: round.exited });
    const y = new Yielder();
    for (const p of plan?.order ?? round.processes) {
      const step = plan ? plan.prepare(p) : { fork: false, runs: p.runs };
      if (step.fork) {
        const inherit = (step.inherit ?? []).map((r) => ({ addr: r.start, pages: (r.end - r.start) / PAGE, zero: false }));
        const table = Buffer.alloc(inherit.length * ENTRY);
        writeEntries(table, 0, inherit);
        await this.conn.send({ t: 'fork', pid: p.pid, n: inherit.length }, table);
      }
      const mem = plan?.keepShared && step.runs.length > 0 ? openMem(p.pid) : -1;
      try {
        for (const entries of frameRuns(step.runs, this.frameBytes)) {
          await this.sendFrame(p.pid, entries, st, noteSent, mem);
          await y.maybe();
        }
      } finally {
        if (mem >= 0) closeFd(mem);
      }
    }
    await this.conn.send({ t: 'pages-end', round: round.round, frames: st.frames, pages: st.pagesSent, zero: st.zeroPages });
    const ack = await this.waitAck(round.round);
    if (ack.pages !== st.pagesSent || ack.zero !== st.zeroPages)
      throw new FerryError(ErrorCode.Internal, `receiver applied ${ack.pages}+${ack.zero} pages of round ${round.round}, ${st.pagesSent}+${st.zeroPages} were sent`);
    const durationMs = performance.now() - t0;
    const bytesOnWire = this.conn.bytesSent - wire0;
    return {
      round: round.round,
      processes: round.processes.length,
      pagesSent: st.pagesSent,
      zeroPages: st.zeroPages,
      pagesSkipped: st.pagesSkipped,
      bytesRaw: st.bytesRaw,
      bytesOnWire,
      compressionRatio: st.payload > 0 ? st.bytesRaw / st.payload : 1,
      frames: st.frames,
      lz4Frames: st.lz4Frames,
      durationMs,
      bandwidthBps: durationMs > 0 ? bytesOnWire / (durationMs / 1000) : 0,
      peakInflightBytes: st.peakInflight,
      compression: this.policy.state,
    };
  }

  /** Ends the page stream; the connection can carry other frames afterwards. */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.startReader();
    const done = new Promise<void>((resolve, reject) => (this.doneWaiter = { resolve, reject }));
    await this.conn.send({ t: 'pages-done' });
    await done;
    this.finished = true;
  }

  private async sendFrame(pid: number, planned: Entry[], st: FrameStats, noteSent: ((pid: number, addr: number, data: Buffer) => void) | undefined, mem: number): Promise<void> {
    const spans = planned.filter((e) => !e.zero).map((e) => ({ start: e.addr, end: e.addr + e.pages * PAGE }));
    const dataBytes = spans.reduce((a, s) => a + s.end - s.start, 0);
    const buf = this.buffer(TABLE_BYTES + dataBytes);
    const data = buf.subarray(TABLE_BYTES, TABLE_BYTES + dataBytes);
    const ok = dataBytes > 0 ? readPages(pid, spans, data, mem) : new Uint8Array(0);
    // Final entries: unreadable pages dropped, zero pages as zero runs, data compacted in place.
    const entries: Entry[] = [];
    const push = (addr: number, zero: boolean) => {
      const last = entries[entries.length - 1];
      if (last && last.zero === zero && last.addr + last.pages * PAGE === addr) last.pages++;
      else entries.push({ addr, pages: 1, zero });
    };
    let src = 0;
    let dst = 0;
    for (const e of planned) {
      if (e.zero) {
        const last = entries[entries.length - 1];
        if (last && last.zero && last.addr + last.pages * PAGE === e.addr) last.pages += e.pages;
        else entries.push({ ...e });
        st.zeroPages += e.pages;
        continue;
      }
      for (let i = 0, addr = e.addr; i < e.pages; i++, addr += PAGE, src++) {
        if (!ok[src]) {
          st.pagesSkipped++;
          continue;
        }
        if (isZeroPage(data, src * PAGE)) {
          noteSent?.(pid, addr, data.subarray(src * PAGE, (src + 1) * PAGE));
          push(addr, true);
          st.zeroPages++;
          continue;
        }
        if (dst !== src) data.copy(data, dst * PAGE, src * PAGE, (src + 1) * PAGE);
        push(addr, false);
        dst++;
      }
    }
    if (entries.length === 0) return;
    const raw = data.subarray(0, dst * PAGE);
    if (noteSent) {
      let off = 0;
      for (const e of entries) {
        if (e.zero) continue;
        noteSent(pid, e.addr, raw.subarray(off, off + e.pages * PAGE));
        off += e.pages * PAGE;
      }
    }
    const tableAt = writeTable(buf, entries);
    const table = buf.subarray(tableAt, TABLE_BYTES);
    let payload = buf.subarray(tableAt, TABLE_BYTES + raw.length);
    let enc = 'raw';
    const plan = this.policy.next();
    if (raw.length > 0 && (plan.compress || plan.sample)) {
      const t = performance.now();
      const packed = compressSync(raw);
      this.policy.noteCompressed(raw.length, packed.length, performance.now() - t);
      // Only when it saves something worth the receiver's decompression.
      if (packed.length < raw.length * 0.9) {
        payload = Buffer.concat([table, packed]);
        enc = 'lz4';
        st.lz4Frames++;
      }
    }
    const sum = checksum(raw);
    const cost = payload.length + FRAME_OVERHEAD;
    await this.waitWindow(cost);
    this.sent += cost;
    st.peakInflight = Math.max(st.peakInflight, this.sent - this.credited);
    this.inflight.push({ upTo: this.sent, raw: raw.length });
    await this.conn.send({ t: 'pages', pid, n: entries.length, enc, raw: raw.length, ...(sum ? { sum } : {}) }, payload);
    this.recycle(buf);
    st.frames++;
    st.pagesSent += dst;
    st.bytesRaw += raw.length;
    st.payload += payload.length - table.length;
  }

  /**
   * A frame buffer: recycled when the socket has handed every queued write to the kernel (its
   * writableLength is 0, so no earlier frame still points into a pooled buffer), else new.
   */
  private buffer(size: number): Buffer {
    if (this.conn.socket.writableLength === 0) {
      const i = this.pool.findIndex((b) => b.length >= size);
      if (i >= 0) return this.pool.splice(i, 1)[0]!.subarray(0, size);
    }
    return Buffer.allocUnsafeSlow(Math.max(size, TABLE_BYTES + this.frameBytes));
  }

  private recycle(view: Buffer): void {
    if (this.pool.length >= 4) return;
    this.pool.push(Buffer.from(view.buffer, view.byteOffset, view.buffer.byteLength - view.byteOffset));
  }

  private waitWindow(cost: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.sent - this.credited + cost <= this.windowBytes) return Promise.resolve();
    return new Promise((resolve, reject) => (this.creditWaiter = { resolve, reject }));
  }

  private waitAck(round: number): Promise<{ pages: number; zero: number }> {
    const have = this.acks.get(round);
    if (have) return Promise.resolve(have);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.ackWaiter = { round, w: { resolve: () => resolve(this.acks.get(round)!), reject } }));
  }

  /**
   * Handles what the receiver sends back as it arrives (the arrival time of credits is what
   * measures delivery); stops after pages-done-ack so the connection is free again.
   */
  private startReader(): void {
    if (this.reading) return;
    this.reading = true;
    const loop = async () => {
      for (;;) {
        const f = await this.conn.next();
        if (!f) throw new FerryError(ErrorCode.Unavailable, 'data stream closed during the page stream');
        if (this.onFrame(f)) return;
      }
    };
    loop().then(
      () => (this.reading = false),
      (err: Error) => this.fail(err),
    );
  }

  /** True at the end of the page stream. */
  private onFrame(f: Frame): boolean {
    const h = f.header;
    switch (h.t) {
      case 'pages-credit': {
        const upTo = Number(h.upTo);
        const at = performance.now();
        let raw = 0;
        while (this.inflight.length && this.inflight[0]!.upTo <= upTo) raw += this.inflight.shift()!.raw;
        this.credited = upTo;
        this.policy.noteDelivered(raw, at);
        const w = this.creditWaiter;
        if (w) {
          this.creditWaiter = null;
          w.resolve();
        }
        return false;
      }
      case 'pages-ack': {
        this.acks.set(Number(h.round), { pages: Number(h.pages), zero: Number(h.zero) });
        const w = this.ackWaiter;
        if (w && w.round === Number(h.round)) {
          this.ackWaiter = null;
          w.w.resolve();
        }
        return false;
      }
      case 'pages-done-ack':
        this.doneWaiter?.resolve();
        this.doneWaiter = null;
        return true;
      case 'error': {
        const code = Object.values(ErrorCode).find((c) => c === h.code);
        const details = typeof h.details === 'object' && h.details !== null ? (h.details as Record<string, unknown>) : undefined;
        if (code && code !== ErrorCode.Internal) throw new FerryError(code, String(h.message), details ? { details } : {});
        throw new FerryError(ErrorCode.Internal, `page receiver failed: ${String(h.message)}`);
      }
      default:
        throw new FerryError(ErrorCode.BadMessage, `page stream: unexpected "${h.t}" from the receiver`);
    }
  }

  private fail(err: Error): void {
    this.failure = err;
    this.reading = false;
    for (const w of [this.creditWaiter, this.ackWaiter?.w, this.doneWaiter]) w?.reject(err);
    this.creditWaiter = null;
    this.ackWaiter = null;
    this.doneWaiter = null;
  }
}

/** A process's /proc/PID/mem, or -1 when it is gone (its pages then read as nothing either way). */
function openMem(pid: number): number {
  try {
    return openFile(`/proc/${pid}/mem`, O.RDONLY | O.CLOEXEC);
  } catch {
    return -1;
  }
}

export interface ReceivedRound {
  round: number;
  exited: number[];
  frames: number;
  pagesWritten: number;
  zeroPages: number;
  bytesRaw: number;
  bytesOnWire: number;
  durationMs: number;
}

export class PageReceiver {
  private consumed = 0;

  constructor(
    private readonly conn: DataConnection,
    private readonly sink: PageSink,
    /** Frames the sender puts between rounds (a live migration's `layout`), handled before the next round. */
    private readonly onControl?: (f: Frame) => Promise<void> | void,
  ) {}

  /** Applies the next round into the sink; null once the sender ended the stream. */
  async receiveRound(): Promise<ReceivedRound | null> {
    try {
      let start = await this.conn.next();
      while (start && this.onControl && start.header.t !== 'pages-round' && start.header.t !== 'pages-done' && start.header.t !== 'error') {
        await this.onControl(start);
        start = await this.conn.next();
      }
      if (!start) throw new FerryError(ErrorCode.Unavailable, 'data stream closed before the page stream ended');
      if (start.header.t === 'error') throw new FerryError(ErrorCode.Internal, `page sender failed: ${String(start.header.message)}`);
      if (start.header.t === 'pages-done') {
        await this.conn.send({ t: 'pages-done-ack' });
        return null;
      }
      if (start.header.t !== 'pages-round') throw new FerryError(ErrorCode.BadMessage, `page stream: expected a round, got "${start.header.t}"`);
      return await this.applyRound(start);
    } catch (err) {
      // The code travels too: the sender fails with the receiver's own error (e.g. a verification mismatch).
      const e = FerryError.from(err);
      await this.conn.send({ t: 'error', message: e.message, code: e.code, ...(e.details ? { details: e.details } : {}) }).catch(() => undefined);
      throw err;
    }
  }

  private async applyRound(start: Frame): Promise<ReceivedRound> {
    const t0 = performance.now();
    const wire0 = this.conn.bytesReceived;
    const r: ReceivedRound = { round: Number(start.header.round), exited: (start.header.exited as number[]) ?? [], frames: 0, pagesWritten: 0, zeroPages: 0, bytesRaw: 0, bytesOnWire: 0, durationMs: 0 };
    for (const pid of r.exited) this.sink.drop?.(pid);
    const y = new Yielder();
    for (;;) {
      await y.maybe();
      const f = await this.conn.next();
      if (!f) throw new FerryError(ErrorCode.Unavailable, `data stream closed inside round ${r.round}`);
      const h = f.header;
      if (h.t === 'pages-end') {
        if (Number(h.frames) !== r.frames || Number(h.pages) !== r.pagesWritten || Number(h.zero) !== r.zeroPages)
          throw new FerryError(ErrorCode.BadMessage, `round ${r.round}: sender says ${String(h.frames)} frames, ${String(h.pages)}+${String(h.zero)} pages; ${r.frames} frames, ${r.pagesWritten}+${r.zeroPages} arrived`);
        await this.conn.send({ t: 'pages-ack', round: r.round, pages: r.pagesWritten, zero: r.zeroPages });
        r.bytesOnWire = this.conn.bytesReceived - wire0;
        r.durationMs = performance.now() - t0;
        return r;
      }
      if (h.t === 'fork') {
        const inherit = readTable(f.payload, Number(h.n)).map((e) => ({ start: e.addr, end: e.addr + e.pages * PAGE }));
        this.sink.born?.(Number(h.pid), inherit);
        continue;
      }
      if (h.t !== 'pages') throw new FerryError(ErrorCode.BadMessage, `page stream: unexpected "${h.t}" inside round ${r.round}`);
      this.applyFrame(f, r);
      this.consumed += f.payload.length + FRAME_OVERHEAD;
      await this.conn.send({ t: 'pages-credit', upTo: this.consumed });
    }
  }

  private applyFrame(f: Frame, r: ReceivedRound): void {
    const h = f.header;
    const pid = Number(h.pid);
    const n = Number(h.n);
    const entries = readTable(f.payload, n);
    const body = f.payload.subarray(n * ENTRY);
    const raw = h.enc === 'lz4' ? uncompressSync(body) : body;
    const wantRaw = entries.reduce((a, e) => a + (e.zero ? 0 : e.pages * PAGE), 0);
    if (raw.length !== Number(h.raw) || raw.length !== wantRaw)
      throw new FerryError(ErrorCode.BadMessage, `page frame of pid ${pid}: ${raw.length} data bytes, header says ${String(h.raw)}, runs need ${wantRaw}`);
    if (typeof h.sum === 'string') {
      const sum = checksum(raw);
      if (sum !== undefined && sum !== h.sum) throw new FerryError(ErrorCode.BadMessage, `page frame of pid ${pid}: checksum mismatch`);
    }
    let off = 0;
    for (const e of entries) {
      if (e.zero) {
        this.sink.zero(pid, e.addr, e.pages);
        r.zeroPages += e.pages;
        continue;
      }
      this.sink.write(pid, e.addr, raw.subarray(off, off + e.pages * PAGE));
      off += e.pages * PAGE;
      r.pagesWritten += e.pages;
    }
    r.frames++;
    r.bytesRaw += raw.length;
  }
}
