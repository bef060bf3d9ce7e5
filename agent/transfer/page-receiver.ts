// The receiving end of the page stream (protocol in pages.ts): applies each round's frames to
// their processes through a PageSink, one frame at a time, and returns credits as it applies them.
import { uncompressSync } from 'lz4-napi';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type FrameHeader, errorMessage } from '../../shared/stream-frames.ts';
import { PAGE, type Span } from '../engine/memory/dirty/types.ts';
import { ENTRY, FRAME_OVERHEAD, Yielder, checksum, readTable } from './page-table.ts';
import type { PageSink } from './page-sinks.ts';
import type { Frame } from './frames.ts';
import type { DataConnection } from './stream.ts';

/** Applied bytes that may wait for their credit while more frames are at hand (a quarter of the sender's default window). */
const CREDIT_BATCH = 4 << 20;

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
  /** What the last credit said. */
  private credited = 0;

  constructor(
    private readonly conn: DataConnection,
    private readonly sink: PageSink,
    /** Frames the sender puts between rounds (a live migration's `layout`), handled before the next round. */
    private readonly onControl?: (f: Frame) => Promise<void> | void,
    /** The sender's last delta begins: the workload is frozen from here on. */
    private readonly onFrozenRound?: () => void,
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
      if (start.header.t === 'error') throw new FerryError(ErrorCode.Internal, `page sender failed: ${start.header.message}`);
      if (start.header.t === 'pages-done') {
        await this.conn.send({ t: 'pages-done-ack' });
        return null;
      }
      if (start.header.t !== 'pages-round') throw new FerryError(ErrorCode.BadMessage, `page stream: expected a round, got "${start.header.t}"`);
      if (start.header.frozen) this.onFrozenRound?.();
      return await this.applyRound(start.header);
    } catch (err) {
      // The code travels too: the sender fails with the receiver's own error (e.g. a verification mismatch).
      const e = FerryError.from(err);
      await this.conn.send({ t: 'error', message: errorMessage(e.message), code: e.code, ...(e.details ? { details: e.details } : {}) }).catch(() => undefined);
      throw err;
    }
  }

  private async applyRound(start: FrameHeader<'pages-round'>): Promise<ReceivedRound> {
    const t0 = performance.now();
    const wire0 = this.conn.bytesReceived;
    const r: ReceivedRound = { round: start.round, exited: start.exited, frames: 0, pagesWritten: 0, zeroPages: 0, bytesRaw: 0, bytesOnWire: 0, durationMs: 0 };
    for (const pid of r.exited) this.sink.drop?.(pid);
    const y = new Yielder();
    for (;;) {
      await y.maybe();
      const f = await this.conn.next();
      if (!f) throw new FerryError(ErrorCode.Unavailable, `data stream closed inside round ${r.round}`);
      const h = f.header;
      if (h.t === 'pages-end') {
        await this.credit(true);
        if (h.frames !== r.frames || h.pages !== r.pagesWritten || h.zero !== r.zeroPages)
          throw new FerryError(ErrorCode.BadMessage, `round ${r.round}: sender says ${h.frames} frames, ${h.pages}+${h.zero} pages; ${r.frames} frames, ${r.pagesWritten}+${r.zeroPages} arrived`);
        await this.conn.send({ t: 'pages-ack', round: r.round, pages: r.pagesWritten, zero: r.zeroPages });
        r.bytesOnWire = this.conn.bytesReceived - wire0;
        r.durationMs = performance.now() - t0;
        return r;
      }
      if (h.t === 'fork') {
        const inherit = readTable(f.payload, h.n).map((e) => ({ start: e.addr, end: e.addr + e.pages * PAGE }));
        this.sink.born?.(h.pid, inherit);
        continue;
      }
      if (h.t !== 'pages') throw new FerryError(ErrorCode.BadMessage, `page stream: unexpected "${h.t}" inside round ${r.round}`);
      this.applyFrame(h, f.payload, r);
      // The sink wrote (and checked) the pages synchronously: the payload's buffer can serve another frame.
      f.release?.();
      this.consumed += f.payload.length + FRAME_OVERHEAD;
      await this.credit(false);
    }
  }

  /**
   * Returns credits in batches: a credit costs a frame each way and a TLS record, and one per
   * page frame cost the receiver's thread half a second a GiB. A batch goes once CREDIT_BATCH
   * bytes were applied, and always before this side could wait for data (nothing queued): a
   * sender waiting for window then never waits on a credit held back here.
   */
  private async credit(force: boolean): Promise<void> {
    if (this.consumed === this.credited) return;
    if (!force && this.consumed - this.credited < CREDIT_BATCH && this.conn.queued > 0) return;
    this.credited = this.consumed;
    await this.conn.send({ t: 'pages-credit', upTo: this.consumed });
  }

  private applyFrame(h: FrameHeader<'pages'>, payload: Buffer, r: ReceivedRound): void {
    const { pid, n } = h;
    const entries = readTable(payload, n);
    const body = payload.subarray(n * ENTRY);
    const raw = h.enc === 'lz4' ? uncompressSync(body) : body;
    const wantRaw = entries.reduce((a, e) => a + (e.zero ? 0 : e.pages * PAGE), 0);
    if (raw.length !== h.raw || raw.length !== wantRaw)
      throw new FerryError(ErrorCode.BadMessage, `page frame of pid ${pid}: ${raw.length} data bytes, header says ${h.raw}, runs need ${wantRaw}`);
    if (h.sum !== undefined) {
      const sum = checksum(raw);
      if (sum !== undefined && sum !== h.sum) throw new FerryError(ErrorCode.BadMessage, `page frame of pid ${pid}: checksum mismatch`);
    }
    let off = 0;
    const runs: Span[] = [];
    for (const e of entries) {
      if (e.zero) {
        this.sink.zero(pid, e.addr, e.pages);
        r.zeroPages += e.pages;
        continue;
      }
      if (this.sink.writeRuns) runs.push({ start: e.addr, end: e.addr + e.pages * PAGE });
      else this.sink.write(pid, e.addr, raw.subarray(off, off + e.pages * PAGE));
      off += e.pages * PAGE;
      r.pagesWritten += e.pages;
    }
    if (runs.length > 0) this.sink.writeRuns!(pid, runs, raw.subarray(0, off));
    r.frames++;
    r.bytesRaw += raw.length;
  }
}
