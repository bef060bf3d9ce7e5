// The data stream's bandwidth cap (migrate --bandwidth, drain --bandwidth): a paced connection
// writes no faster than its rate. A lower bound on elapsed time only: a slow machine passes too.
import { describe, expect, it } from 'vitest';
import { Pacer } from '../../agent/transfer/stream.ts';

describe('data stream pacing', () => {
  it('lets a burst of a tenth of a second through, then holds the rate', async () => {
    const rate = 10 * 1024 * 1024;
    const p = new Pacer(rate);
    const t0 = performance.now();
    // 3 MiB in 64 KiB frames: 1 MiB of burst, then 2 MiB at 10 MiB/s, at least about 200 ms.
    for (let sent = 0; sent < 3 * 1024 * 1024; sent += 64 * 1024) await p.take(64 * 1024);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(180);
  });

  it('does not hold a stream that stays under its rate', async () => {
    const p = new Pacer(100 * 1024 * 1024);
    let waited = 0;
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      await p.take(4096);
      waited += performance.now() - t;
    }
    expect(waited).toBeLessThan(1_000);
  });
});
