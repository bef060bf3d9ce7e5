// The lz4 decision follows measurements: compress only where it delivers more bytes per second.
import { describe, expect, it } from 'vitest';
import { CompressionPolicy } from '../../agent/transfer/compression.ts';

const MiB = 1 << 20;

/**
 * Drives a policy through `epochs` epochs of 1 MiB frames on a simulated pipe: delivery takes
 * `rawMsPerMiB` uncompressed, and with lz4 `lz4MsPerMiB` (compression and the smaller frames
 * included). Sampled frames report lz4's own speed and ratio.
 */
function drive(p: CompressionPolicy, o: { rawMsPerMiB: number; lz4MsPerMiB: number; lz4CpuMsPerMiB: number; ratio: number; epochs: number }): boolean[] {
  let now = 0;
  const modes: boolean[] = [];
  for (let e = 0; e < o.epochs; e++) {
    for (let f = 0; f < 4; f++) {
      const plan = p.next();
      if (plan.compress || plan.sample) p.noteCompressed(MiB, MiB / o.ratio, o.lz4CpuMsPerMiB);
      modes.push(plan.compress);
      now += plan.compress ? o.lz4MsPerMiB : o.rawMsPerMiB;
      p.noteDelivered(MiB, now);
    }
  }
  return modes;
}

describe('CompressionPolicy', () => {
  it('never compresses on a fast link where lz4 is the bottleneck, even for compressible data', () => {
    const p = new CompressionPolicy('auto', { epochBytes: 4 * MiB });
    // 1.5 GB/s pipe; lz4 at 0.4 GB/s with a 3x ratio.
    const modes = drive(p, { rawMsPerMiB: 0.7, lz4MsPerMiB: 2.6, lz4CpuMsPerMiB: 2.5, ratio: 3, epochs: 40 });
    expect(modes.every((m) => !m)).toBe(true);
    expect(p.state.reason).toMatch(/lz4 cannot win/);
    expect(p.state.lz4Ratio).toBeCloseTo(3);
  });

  it('switches lz4 on for a slow link and compressible data, and keeps it', () => {
    const p = new CompressionPolicy('auto', { epochBytes: 4 * MiB });
    // 110 MB/s link (9.5 ms/MiB); lz4 2x at 0.4 GB/s delivers a MiB in ~5 ms.
    const modes = drive(p, { rawMsPerMiB: 9.5, lz4MsPerMiB: 5, lz4CpuMsPerMiB: 2.5, ratio: 2, epochs: 40 });
    expect(modes.slice(-40).filter((m) => m).length).toBeGreaterThan(30);
    expect(p.state.compressing).toBe(true);
    expect(p.state.lz4DeliveryBps!).toBeGreaterThan(p.state.rawDeliveryBps!);
  });

  it('leaves incompressible data alone on a slow link', () => {
    const p = new CompressionPolicy('auto', { epochBytes: 4 * MiB });
    const modes = drive(p, { rawMsPerMiB: 9.5, lz4MsPerMiB: 12, lz4CpuMsPerMiB: 2.5, ratio: 1.0, epochs: 30 });
    expect(modes.every((m) => !m)).toBe(true);
  });

  it('goes back to uncompressed when a tried lz4 epoch delivers less', () => {
    const p = new CompressionPolicy('auto', { epochBytes: 4 * MiB, exploreEvery: 5 });
    // lz4 looks promising (ratio 2, fast CPU) but the receiver decompressing makes it slower.
    const modes = drive(p, { rawMsPerMiB: 2, lz4MsPerMiB: 3, lz4CpuMsPerMiB: 0.5, ratio: 2, epochs: 60 });
    const on = modes.filter((m) => m).length;
    expect(on).toBeGreaterThan(0); // it tried
    expect(on).toBeLessThan(modes.length / 4); // and mostly stayed uncompressed
    expect(p.state.rawDeliveryBps!).toBeGreaterThan(p.state.lz4DeliveryBps!);
  });

  it('tries lz4 less and less often while it keeps losing', () => {
    const p = new CompressionPolicy('auto', { epochBytes: 4 * MiB, exploreEvery: 2 });
    const modes = drive(p, { rawMsPerMiB: 2, lz4MsPerMiB: 3, lz4CpuMsPerMiB: 0.3, ratio: 3, epochs: 400 });
    const firstHalf = modes.slice(0, modes.length / 2).filter((m) => m).length;
    const secondHalf = modes.slice(modes.length / 2).filter((m) => m).length;
    expect(firstHalf).toBeGreaterThan(secondHalf);
    expect(secondHalf).toBeLessThan(modes.length / 2 / 50);
  });

  it('forced modes do what they say and never sample', () => {
    const on = new CompressionPolicy('on');
    const off = new CompressionPolicy('off');
    for (let i = 0; i < 10; i++) {
      expect(on.next()).toEqual({ compress: true, sample: false });
      expect(off.next()).toEqual({ compress: false, sample: false });
    }
  });
});
