// Whether the page stream compresses (lz4): decided from measurements, never assumed. On this
// class of machine lz4-napi compresses page data at ~0.4 GB/s, slower than Node moves bytes over
// loopback or a 10 Gbit link, so compressing there would slow the transfer; on a 1 Gbit link a
// 2x ratio nearly doubles it. The policy measures what matters, delivered uncompressed bytes
// per second end to end (sender reads, compression, the wire, the receiver applying), in epochs
// of each mode, and keeps the faster one:
//  - it starts uncompressed and compresses a sample of frames (then sends whichever is smaller),
//    which gives lz4's speed and ratio on this data;
//  - it tries an lz4 epoch only when even a pessimistic model says lz4 wins by 20 %: compressing
//    and then sending the smaller frames one after the other, 1 / (1/lz4 + 1/(delivery * ratio))
//    — on a fast link with ordinary data it never does;
//  - it re-measures the losing mode now and then (the data or the link can change), half as
//    often after each time lz4 lost.

export type CompressionMode = 'auto' | 'on' | 'off';

export interface CompressionState {
  mode: CompressionMode;
  /** What the next frames do. */
  compressing: boolean;
  reason: string;
  /** lz4 input bytes per second of CPU, and uncompressed/compressed, from samples (null before any). */
  lz4Bps: number | null;
  lz4Ratio: number | null;
  /** Delivered uncompressed bytes per second measured in uncompressed and in lz4 epochs. */
  rawDeliveryBps: number | null;
  lz4DeliveryBps: number | null;
  epochs: number;
}

export interface CompressionPolicyOptions {
  /** Uncompressed bytes per measurement epoch. */
  epochBytes?: number;
  /** Re-measure the other mode after this many epochs. */
  exploreEvery?: number;
}

const EWMA = 0.5;
const mix = (old: number | null, v: number): number => (old === null ? v : old * (1 - EWMA) + v * EWMA);

export class CompressionPolicy {
  private compressing: boolean;
  private reason: string;
  private lz4Bps: number | null = null;
  private lz4Ratio: number | null = null;
  private samples = 0;
  private frames = 0;
  private readonly delivery: { raw: number | null; lz4: number | null } = { raw: null, lz4: null };
  private epochStart: number | null = null;
  private epochBytes = 0;
  private epochs = 0;
  private sinceExplore = 0;
  private readonly epochSize: number;
  private exploreEvery: number;

  constructor(
    readonly mode: CompressionMode = 'auto',
    opts: CompressionPolicyOptions = {},
  ) {
    this.epochSize = opts.epochBytes ?? 32 << 20;
    this.exploreEvery = opts.exploreEvery ?? 8;
    this.compressing = mode === 'on';
    this.reason = mode === 'auto' ? 'starting uncompressed; sampling lz4' : `lz4 forced ${mode}`;
  }

  /** For the next frame: compress it (lz4 epoch), or compress it only as a sample (send the smaller). */
  next(): { compress: boolean; sample: boolean } {
    this.frames++;
    if (this.mode !== 'auto') return { compress: this.mode === 'on', sample: false };
    if (this.compressing) return { compress: true, sample: false };
    // Dense samples until the estimate settles, then sparse ones to follow the data.
    const every = this.samples < 8 ? 4 : 64;
    return { compress: false, sample: this.frames % every === 1 };
  }

  /** One frame went through lz4 (sample or not): `ms` of CPU for `raw` bytes giving `out` bytes. */
  noteCompressed(raw: number, out: number, ms: number): void {
    this.samples++;
    if (ms > 0) this.lz4Bps = mix(this.lz4Bps, raw / (ms / 1000));
    this.lz4Ratio = mix(this.lz4Ratio, raw / Math.max(out, 1));
  }

  /** The stream was idle (between rounds): the next epoch starts at `at`. */
  resume(at: number): void {
    this.epochStart = at;
    this.epochBytes = 0;
  }

  /** `raw` uncompressed bytes were acknowledged by the receiver at time `at` (ms). */
  noteDelivered(raw: number, at: number): void {
    if (this.epochStart === null) this.epochStart = at;
    this.epochBytes += raw;
    if (this.epochBytes < this.epochSize) return;
    const ms = at - this.epochStart;
    if (ms > 0) {
      const bps = this.epochBytes / (ms / 1000);
      if (this.compressing) this.delivery.lz4 = mix(this.delivery.lz4, bps);
      else this.delivery.raw = mix(this.delivery.raw, bps);
    }
    this.epochs++;
    this.sinceExplore++;
    this.epochStart = at;
    this.epochBytes = 0;
    if (this.mode === 'auto') this.decide();
  }

  private decide(): void {
    const { raw, lz4 } = this.delivery;
    const mb = (v: number | null) => (v === null ? '?' : `${(v / 1e6).toFixed(0)} MB/s`);
    const explore = this.sinceExplore >= this.exploreEvery;
    if (this.compressing) {
      if (raw !== null && lz4 !== null && raw >= lz4) {
        this.exploreEvery = Math.min(this.exploreEvery * 2, 128);
        return this.set(false, `uncompressed delivered ${mb(raw)} >= lz4 ${mb(lz4)}`);
      }
      if (explore) return this.set(false, `re-measuring uncompressed (lz4 delivered ${mb(lz4)})`, true);
      return;
    }
    const ratio = this.lz4Ratio ?? 1;
    // Pessimistic: compression and sending do not overlap.
    const predicted = this.lz4Bps !== null && raw !== null ? 1 / (1 / this.lz4Bps + 1 / (raw * ratio)) : null;
    const couldWin = ratio >= 1.2 && predicted !== null && raw !== null && predicted > raw * 1.2;
    if (!couldWin) {
      this.reason =
        raw === null
          ? 'measuring uncompressed delivery'
          : `lz4 cannot win: ratio ${ratio.toFixed(2)}, lz4 ${mb(this.lz4Bps)}, predicted ${mb(predicted)} vs uncompressed delivery ${mb(raw)}`;
      return;
    }
    if (lz4 !== null && lz4 > raw * 1.05) return this.set(true, `lz4 delivered ${mb(lz4)} > uncompressed ${mb(raw)}`);
    if (lz4 === null || explore) return this.set(true, `trying lz4 (ratio ${ratio.toFixed(2)}, ${mb(this.lz4Bps)}) against uncompressed ${mb(raw)}`, true);
    this.reason = `uncompressed ${mb(raw)} >= lz4 ${mb(lz4)}`;
  }

  private set(on: boolean, reason: string, exploring = false): void {
    this.compressing = on;
    this.reason = reason;
    if (exploring) this.sinceExplore = 0;
  }

  get state(): CompressionState {
    return {
      mode: this.mode,
      compressing: this.compressing,
      reason: this.reason,
      lz4Bps: this.lz4Bps,
      lz4Ratio: this.lz4Ratio,
      rawDeliveryBps: this.delivery.raw,
      lz4DeliveryBps: this.delivery.lz4,
      epochs: this.epochs,
    };
  }
}
