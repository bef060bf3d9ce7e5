// The memory page stream of a pre-copy migration, over the agent-to-agent DataConnection: the
// protocol, and its sending end (the receiver: page-receiver.ts; the payload: page-table.ts).
//
// Frames (payload layout below):
//   pages-round {round, exited, frozen?}   a round starts; processes that exited; frozen: the last delta
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

import { compressSync } from 'lz4-napi';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { FrameHeader } from '../../shared/stream-frames.ts';
import { readPages } from '../engine/memory/dirty/read.ts';
import { type DirtyRound, type DirtyRun, PAGE, type ProcessDirty, type Span } from '../engine/memory/dirty/types.ts';
import { O, closeFd, openFile } from '../ffi/syscalls.ts';
import { CompressionPolicy, type CompressionMode, type CompressionState } from './compression.ts';
import type { Frame } from './frames.ts';
import type { DataConnection } from './stream.ts';
import { ENTRY, FRAME_OVERHEAD, TABLE_BYTES, Yielder, checksum, frameRuns, isZeroPage, writeEntries, writeTable, type Entry } from './page-table.ts';

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

/** What a round has sent so far: pages (data, zero and unreadable ones), their bytes, and the stream's. */
export interface SentSoFar {
  pages: number;
  bytesRaw: number;
  bytesOnWire: number;
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
  async sendRound(
    round: DirtyRound,
    noteSent?: (pid: number, addr: number, data: Buffer) => void,
    plan?: RoundPlan,
    /** After each frame: what the round has sent so far. */
    onFrame?: (sofar: SentSoFar) => void,
  ): Promise<PageRoundStats> {
    if (this.finished) throw new FerryError(ErrorCode.Internal, 'page stream already finished');
    this.startReader();
    const t0 = performance.now();
    const wire0 = this.conn.bytesSent;
    this.policy.resume(t0);
    const st: FrameStats = { frames: 0, lz4Frames: 0, pagesSent: 0, zeroPages: 0, pagesSkipped: 0, bytesRaw: 0, payload: 0, peakInflight: 0 };
    await this.conn.send({ t: 'pages-round', round: round.round, exited: round.exited, ...(round.frozen ? { frozen: true as const } : {}) });
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
          onFrame?.({ pages: st.pagesSent + st.zeroPages + st.pagesSkipped, bytesRaw: st.bytesRaw, bytesOnWire: this.conn.bytesSent - wire0 });
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
    let enc: FrameHeader<'pages'>['enc'] = 'raw';
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
        const upTo = h.upTo;
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
        this.acks.set(h.round, { pages: h.pages, zero: h.zero });
        const w = this.ackWaiter;
        if (w && w.round === h.round) {
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
        if (code && code !== ErrorCode.Internal) throw new FerryError(code, h.message, h.details ? { details: h.details } : {});
        throw new FerryError(ErrorCode.Internal, `page receiver failed: ${h.message}`);
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
