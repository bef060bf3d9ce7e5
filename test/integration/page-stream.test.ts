// The page stream over a real authenticated (mutual TLS) stream pair: every page arrives
// intact (data, zero pages, explicit zero runs) with lz4 off, forced on and automatic; pages go
// straight into another process; the window holds a sender whose receiver is slow; and a
// corrupted frame is refused.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressOf } from '../../agent/ffi/libc.ts';
import { sys, vmWriteSpans } from '../../agent/ffi/syscalls.ts';
import { readPages } from '../../agent/engine/memory/dirty/read.ts';
import { type DirtyRound, type DirtyRun, PAGE } from '../../agent/engine/memory/dirty/types.ts';
import { ProcessSink, ShadowSink, type PageSink } from '../../agent/transfer/page-sinks.ts';
import { PageReceiver } from '../../agent/transfer/page-receiver.ts';
import { loopbackPair } from './helpers/stream-peers.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { buildFixture, cleanup, logLines, sealInheritedFds, startWorkload, waitFor } from './engine-fixtures/helpers.ts';
import { streamPair } from './helpers/precopy.ts';

let target = '';
beforeAll(() => {
  sealInheritedFds();
  target = buildFixture('dirty-target');
});
afterAll(() => cleanup());

/**
 * A page-aligned region of this very process, 3 kinds of content: random (incompressible),
 * repetitive text (lz4 shrinks it a lot), and all-zero pages sprinkled in.
 */
function sourceRegion(pages: number): { buf: Buffer; addr: number } {
  const raw = Buffer.alloc((pages + 1) * PAGE);
  const at = Number((addressOf(raw) + 4095n) & ~4095n) - Number(addressOf(raw));
  const buf = raw.subarray(at, at + pages * PAGE);
  for (let p = 0; p < pages; p++) {
    const page = buf.subarray(p * PAGE, (p + 1) * PAGE);
    if (p % 7 === 3) continue; // zero page inside a data run
    if (p % 2 === 0) randomBytes(PAGE).copy(page);
    else page.write(`page ${p} `.repeat(PAGE / 8).slice(0, PAGE));
  }
  return { buf, addr: Number(addressOf(buf)) };
}

const roundOf = (pid: number, runs: DirtyRun[], n = 1): DirtyRound => ({
  round: n,
  processes: [{ pid, method: 'hash', ranges: [], runs, pagesScanned: 0 }],
  exited: [],
  pagesScanned: 0,
  pagesDirty: runs.reduce((a, r) => a + r.pages, 0),
  zeroPages: runs.reduce((a, r) => a + (r.zero ? r.pages : 0), 0),
  scanMs: 0,
});

describe('page stream', () => {
  it.each(['off', 'on', 'auto'] as const)('round trip with lz4 %s: data, zero pages and zero runs arrive intact', async (compression) => {
    const pages = 2048; // 8 MiB
    const src = sourceRegion(pages);
    const gone = sourceRegion(64); // an explicit zero run: the receiver holds garbage there first
    const shadow = new ShadowSink();
    shadow.write(process.pid, gone.addr, Buffer.alloc(64 * PAGE, 0xee));
    const pair = await streamPair(shadow, { compression, frameBytes: 256 << 10 });
    try {
      const runs = [
        { addr: src.addr, pages, zero: false },
        { addr: gone.addr, pages: 64, zero: true },
      ].sort((a, b) => a.addr - b.addr);
      const sent: number[] = [];
      const s = await pair.sender.sendRound(roundOf(process.pid, runs), (_pid, addr, data) => void sent.push(addr, data.length));
      const zeroInData = Math.ceil((pages - 3) / 7);
      expect(s.pagesSent).toBe(pages - zeroInData);
      expect(s.zeroPages).toBe(zeroInData + 64);
      expect(s.pagesSkipped).toBe(0);
      for (let p = 0; p < pages; p++) expect(shadow.page(process.pid, src.addr + p * PAGE).equals(src.buf.subarray(p * PAGE, (p + 1) * PAGE))).toBe(true);
      for (let p = 0; p < 64; p++) expect(shadow.page(process.pid, gone.addr + p * PAGE).equals(Buffer.alloc(PAGE))).toBe(true);
      // Every data page (and every page found zero) was reported to the tracker exactly once.
      expect(sent.filter((_, i) => i % 2 === 1).reduce((a, b) => a + b, 0)).toBe(pages * PAGE);
      if (compression === 'off') expect([s.lz4Frames, s.compressionRatio]).toEqual([0, 1]);
      if (compression === 'on') {
        expect(s.lz4Frames).toBeGreaterThan(0);
        expect(s.compressionRatio).toBeGreaterThan(1.5); // half the data pages are text
        expect(s.bytesOnWire).toBeLessThan(s.bytesRaw);
      }
      expect(s.compression.mode).toBe(compression);
      await pair.sender.finish();
      const got = await pair.received;
      expect(got).toHaveLength(1);
      expect(got[0]).toMatchObject({ round: 1, pagesWritten: s.pagesSent, zeroPages: s.zeroPages, bytesRaw: s.bytesRaw });
    } finally {
      pair.close();
    }
  });

  it('pages unmapped between the scan and the send are skipped, the others arrive', async () => {
    const pages = 64;
    const base = sys('mmap', 0, pages * PAGE, 3, 0x22, -1, 0);
    try {
      const fill = Buffer.alloc(pages * PAGE);
      for (let p = 0; p < pages; p++) fill.fill(p + 1, p * PAGE, (p + 1) * PAGE);
      vmWriteSpans(process.pid, [{ addr: base, len: fill.length }], fill);
      sys('munmap', base + 10 * PAGE, 5 * PAGE); // a hole inside the run
      const shadow = new ShadowSink();
      const pair = await streamPair(shadow, { compression: 'off' });
      try {
        const s = await pair.sender.sendRound(roundOf(process.pid, [{ addr: base, pages, zero: false }]));
        expect([s.pagesSent, s.pagesSkipped, s.zeroPages]).toEqual([pages - 5, 5, 0]);
        for (let p = 0; p < pages; p++) {
          const want = p >= 10 && p < 15 ? Buffer.alloc(PAGE) : fill.subarray(p * PAGE, (p + 1) * PAGE);
          expect(shadow.page(process.pid, base + p * PAGE).equals(want)).toBe(true);
        }
        await pair.sender.finish();
      } finally {
        pair.close();
      }
    } finally {
      sys('munmap', base, pages * PAGE);
    }
  });

  it('writes pages straight into another process, clearing what zero pages replace', async () => {
    const addr = '600000000000';
    const pages = 1000;
    const src = startWorkload([target, 'fill', addr, String(pages), 'pattern'], 'pages-src');
    const dst = startWorkload([target, 'fill', addr, String(pages), 'garbage'], 'pages-dst');
    await waitFor('ready', () => logLines(src).includes('ready') && logLines(dst).includes('ready'));
    const base = Number.parseInt(addr, 16);
    const sink = new ProcessSink(() => dst.pid);
    const pair = await streamPair(sink, { compression: 'auto' });
    try {
      const s = await pair.sender.sendRound(roundOf(src.pid, [{ addr: base, pages, zero: false }]));
      expect(s.zeroPages).toBe(pages / 5);
      const a = Buffer.alloc(pages * PAGE);
      const b = Buffer.alloc(pages * PAGE);
      readPages(src.pid, [{ start: base, end: base + pages * PAGE }], a);
      readPages(dst.pid, [{ start: base, end: base + pages * PAGE }], b);
      expect(b.equals(a)).toBe(true);
      expect(sink.bytesWritten).toBe(pages * PAGE); // data pages written, garbage pages zeroed
      await pair.sender.finish();
    } finally {
      pair.close();
      sink.close();
    }
  });

  it('the window holds the sender while a slow receiver applies', async () => {
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    const slow: PageSink = {
      write: () => void Atomics.wait(sleeper, 0, 0, 1),
      zero: () => undefined,
    };
    const pair = await streamPair(slow, { compression: 'off', frameBytes: 256 << 10, windowBytes: 1 << 20 });
    try {
      const src = sourceRegion(4096); // 16 MiB in 64 frames, a millisecond a run on the receiver
      const s = await pair.sender.sendRound(roundOf(process.pid, [{ addr: src.addr, pages: 4096, zero: false }]));
      expect(s.frames).toBeGreaterThan(32);
      expect(s.peakInflightBytes).toBeGreaterThan(0);
      expect(s.peakInflightBytes).toBeLessThanOrEqual(pair.sender.window);
      expect(pair.sender.window).toBeLessThan(4 << 20);
      await pair.sender.finish();
    } finally {
      pair.close();
    }
  });

  it('a frame whose data does not match its checksum or its runs is refused', async () => {
    const { out, inc } = await loopbackPair({ migrationId: 'm-pages-bad' });
    try {
      const table = Buffer.alloc(16);
      table.writeUInt32LE(0x1000, 0);
      table.writeUInt32LE(1, 8);
      const receiver = new PageReceiver(inc, new ShadowSink());
      await out.send({ t: 'pages-round', round: 1, exited: [] });
      await out.send({ t: 'pages', pid: 1, n: 1, enc: 'raw', raw: PAGE, sum: '1234' }, Buffer.concat([table, Buffer.alloc(PAGE, 1)]));
      await expect(receiver.receiveRound()).rejects.toMatchObject({ code: ErrorCode.BadMessage, message: expect.stringMatching(/checksum/) });
      await expect(out.expect('pages-ack')).rejects.toMatchObject({ message: expect.stringMatching(/peer failed: .*checksum/) });

      const receiver2 = new PageReceiver(inc, new ShadowSink());
      await out.send({ t: 'pages-round', round: 2, exited: [] });
      await out.send({ t: 'pages', pid: 1, n: 1, enc: 'raw', raw: PAGE }, Buffer.concat([table, Buffer.alloc(PAGE / 2)]));
      await expect(receiver2.receiveRound()).rejects.toMatchObject({ code: ErrorCode.BadMessage });
    } finally {
      out.destroy();
      inc.destroy();
    }
  });
});
