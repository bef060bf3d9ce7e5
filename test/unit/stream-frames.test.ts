// The data stream's frame headers (shared/stream-frames.ts) through the real codec: every kind
// survives encodeFrame and FrameDecoder however TCP splits the bytes, and a header that is not
// one of them, or breaks its kind's schema, fails the stream as a bad message that says why.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../agent/transfer/buffer-pool.ts';
import { encodeFrame, FrameDecoder, type Frame } from '../../agent/transfer/frames.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { errorMessage, FRAME_KINDS, type FrameHeader, type FrameKind, MAX_ERROR_MESSAGE, MAX_FRAME_HEADER } from '../../shared/stream-frames.ts';

const hex64 = 'ab'.repeat(32);

/** One frame of every kind, as ferry sends them (a mapped type: a kind left out does not compile). */
const samples: { [K in FrameKind]: { header: FrameHeader<K>; payload?: Buffer } } = {
  open: { header: { t: 'open', migrationId: 'm-frames-1', clear: true } },
  welcome: { header: { t: 'welcome', migrationId: 'm-frames-1', clear: false } },
  bind: { header: { t: 'bind', migrationId: 'm-frames-1', token: hex64 } },
  bound: { header: { t: 'bound' } },
  error: { header: { t: 'error', message: 'pages of pid 7 differ', code: ErrorCode.VerifyMismatch, details: { pid: 7, field: 'page' } } },
  session: { header: { t: 'session', kind: 'precopy' } },
  layout: { header: { t: 'layout', round: 1 }, payload: Buffer.from('{"round":1}') },
  'pages-round': { header: { t: 'pages-round', round: 2, exited: [41, 42] } },
  pages: { header: { t: 'pages', pid: 4242, n: 2, enc: 'lz4', raw: 8192, sum: '9f3a0c' }, payload: Buffer.alloc(4096 + 32, 5) },
  fork: { header: { t: 'fork', pid: 4243, n: 1 }, payload: Buffer.alloc(16, 1) },
  'pages-end': { header: { t: 'pages-end', round: 2, frames: 3, pages: 700, zero: 12 } },
  'pages-done': { header: { t: 'pages-done' } },
  'pages-credit': { header: { t: 'pages-credit', upTo: 2 ** 40 } },
  'pages-ack': { header: { t: 'pages-ack', round: 2, pages: 700, zero: 12 } },
  'pages-done-ack': { header: { t: 'pages-done-ack' } },
  file: { header: { t: 'file', name: 'pages-4242.img', size: 3 } },
  data: { header: { t: 'data' }, payload: Buffer.from([1, 2, 3]) },
  eof: { header: { t: 'eof', sha256: hex64 } },
  done: { header: { t: 'done', files: 1, bytes: 3 } },
  ack: { header: { t: 'ack', bytes: 3 } },
  postcopy: { header: { t: 'postcopy', pid: 4242, n: 1 }, payload: Buffer.alloc(16, 1) },
  'postcopy-resumed': { header: { t: 'postcopy-resumed' } },
  fault: { header: { t: 'fault', pid: 4242, addr: '7f00a000', pages: 16 } },
  'fault-pages': { header: { t: 'fault-pages', pid: 4242, addr: '7f00a000', pages: 1 }, payload: Buffer.alloc(4096, 7) },
  'postcopy-done': {
    header: {
      t: 'postcopy-done',
      figures: { pagesOutstanding: 10, demandFaults: 2, zeroFaults: 0, faultLatencyMs: { median: 0.4, p99: 1.2, max: 1.2 }, pagesPushed: 8, pagesFetched: 2, bytesPushed: 32768, bytesFetched: 8192, pagesDropped: 0, pagesFromBackup: 0, lastPageMs: 12.5 },
    },
  },
};
const frames = Object.values(samples);

/** Bytes of a frame whose header is whatever JSON text (encodeFrame only takes valid headers). */
function rawFrame(json: string, payload = Buffer.alloc(0)): Buffer {
  const h = Buffer.from(json);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(h.length, 0);
  prefix.writeUInt32LE(payload.length, 4);
  return Buffer.concat([prefix, h, payload]);
}

function decodeAll(bytes: Buffer, cuts: number[]): Frame[] {
  const decoder = new FrameDecoder();
  const out: Frame[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...decoder.push(bytes.subarray(at, cut)));
    at = cut;
  }
  return out;
}

function refusal(bytes: Buffer): FerryError {
  try {
    new FrameDecoder().push(bytes);
  } catch (err) {
    if (err instanceof FerryError) return err;
    throw err;
  }
  throw new Error('the frame was accepted');
}

const expectFrames = (got: Frame[]) => {
  expect(got.map((f) => f.header)).toEqual(frames.map((f) => f.header));
  got.forEach((f, i) => expect(f.payload.equals(frames[i]!.payload ?? Buffer.alloc(0))).toBe(true));
};

describe('data stream frames', () => {
  const stream = Buffer.concat(frames.flatMap((f) => encodeFrame(f.header, f.payload)));

  it('has a sample of every kind the union knows', () => {
    expect(new Set(Object.keys(samples))).toEqual(FRAME_KINDS);
  });

  it('round-trips every kind, whole, a byte at a time, and cut anywhere', () => {
    expectFrames(decodeAll(stream, []));
    expectFrames(decodeAll(stream, Array.from({ length: stream.length - 1 }, (_, i) => i + 1)));
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: stream.length }), { maxLength: 40 }), (cuts) => {
        expectFrames(decodeAll(stream, cuts.sort((a, b) => a - b)));
      }),
    );
  });

  it('refuses a frame type nobody sends, naming it (cut short when long)', () => {
    const e = refusal(rawFrame('{"t":"ping"}'));
    expect(e).toMatchObject({ code: ErrorCode.BadMessage, message: 'data stream: unknown frame type "ping"' });
    expect(refusal(rawFrame(JSON.stringify({ t: 'x'.repeat(10_000) }))).message.length).toBeLessThan(120);
  });

  it.each([
    ['not JSON', '{"t":', /frame header is not JSON/],
    ['no type', '{"round":1}', /frame header has no type/],
    ['a type that is no string', '{"t":7}', /frame header has no type/],
    ['not an object', '[1,2]', /frame header has no type/],
    ['null', 'null', /frame header has no type/],
    ['a number as a string', '{"t":"pages","pid":"7","n":1,"enc":"raw","raw":0}', /bad "pages" frame header: pid: .*expected number/],
    ['a negative count', '{"t":"pages-credit","upTo":-1}', /bad "pages-credit" frame header: upTo: .*>=0/],
    ['a fraction', '{"t":"ack","bytes":1.5}', /bad "ack" frame header: bytes: .*int/],
    ['an integer past 2^53', '{"t":"done","files":1,"bytes":1e300}', /bad "done" frame header: bytes/],
    ['a missing field', '{"t":"file","name":"image.json"}', /bad "file" frame header: size: .*undefined/],
    ['an unknown field', '{"t":"bound","extra":1}', /bad "bound" frame header: \(header\): .*extra/],
    ['round 0 (rounds are 1-based)', '{"t":"pages-round","round":0,"exited":[]}', /bad "pages-round" frame header: round/],
    ['a pid beyond the kernel limit', '{"t":"fork","pid":5000000,"n":0}', /bad "fork" frame header: pid/],
    ['an exited pid that is no pid', '{"t":"pages-round","round":1,"exited":[3,-1]}', /bad "pages-round" frame header: exited\.1/],
    ['an unknown encoding', '{"t":"pages","pid":7,"n":1,"enc":"zstd","raw":0}', /bad "pages" frame header: enc/],
    ['a checksum that is not hex', '{"t":"eof","sha256":"not-a-digest"}', /bad "eof" frame header: sha256: expected 64 lowercase hex digits/],
    ['a short token', `{"t":"bind","migrationId":"m-frames-1","token":"${'0'.repeat(32)}"}`, /bad "bind" frame header: token/],
    ['a made-up migration id', '{"t":"open","migrationId":"../../etc"}', /bad "open" frame header: migrationId/],
    ['an empty file name', '{"t":"file","name":"","size":0}', /bad "file" frame header: name/],
    ['an error message past its bound', JSON.stringify({ t: 'error', message: 'x'.repeat(MAX_ERROR_MESSAGE + 1) }), /bad "error" frame header: message/],
    ['several faults at once', '{"t":"pages-ack","round":-1,"pages":"a"}', /bad "pages-ack" frame header: round: .*\(\+2 more\)/],
  ])('refuses %s as a bad message', (_what, json, message) => {
    const e = refusal(rawFrame(json));
    expect(e.code).toBe(ErrorCode.BadMessage);
    expect(e.message).toMatch(message);
  });

  it('refuses frame lengths past the bounds before buffering them', () => {
    const prefix = Buffer.alloc(8);
    prefix.writeUInt32LE(MAX_FRAME_HEADER + 1, 0);
    expect(refusal(prefix)).toMatchObject({ code: ErrorCode.BadMessage, message: expect.stringMatching(/out of bounds/) });
  });

  it('cuts an error message to what a receiver takes', () => {
    const message = errorMessage('y'.repeat(MAX_ERROR_MESSAGE * 2));
    expect(message.length).toBe(MAX_ERROR_MESSAGE);
    expect(decodeAll(Buffer.concat(encodeFrame({ t: 'error', message })), [])[0]?.header).toEqual({ t: 'error', message });
    expect(errorMessage('short')).toBe('short');
  });

  it('checks what senders write at compile time', () => {
    // @ts-expect-error a kind that does not exist
    encodeFrame({ t: 'ping' });
    // @ts-expect-error a field of the wrong type
    encodeFrame({ t: 'ack', bytes: '3' });
    // @ts-expect-error a missing field
    encodeFrame({ t: 'pages-end', round: 1, frames: 0, pages: 0 });
  });

  it('assembles large payloads from TLS-sized chunks into pooled buffers, used again once released', () => {
    const pool = new BufferPool(1 << 20, 8 << 20);
    const decoder = new FrameDecoder(pool);
    const payload = (fill: number) => Buffer.alloc((1 << 20) + 4096, fill);
    const bytes = Buffer.concat([...encodeFrame({ t: 'data' }, payload(1)), ...encodeFrame({ t: 'ack', bytes: 1 }), ...encodeFrame({ t: 'data' }, payload(2))]);
    const got: Frame[] = [];
    for (let at = 0; at < bytes.length; at += 16 * 1024) got.push(...decoder.push(bytes.subarray(at, at + 16 * 1024)));
    expect(got.map((f) => f.header.t)).toEqual(['data', 'ack', 'data']);
    expect(got[0]!.payload.equals(payload(1))).toBe(true);
    expect(got[2]!.payload.equals(payload(2))).toBe(true);
    expect(got[1]!.release).toBeUndefined();
    // Released: the next large payload lands in the same memory (and a second release is harmless).
    const first = got[0]!.payload;
    got[0]!.release!();
    got[0]!.release!();
    const next = Buffer.concat(encodeFrame({ t: 'data' }, payload(3)));
    const again = [...decoder.push(next.subarray(0, 100)), ...decoder.push(next.subarray(100))];
    expect(again[0]!.payload.equals(payload(3))).toBe(true);
    expect(again[0]!.payload.buffer === first.buffer).toBe(true);
  });
});
