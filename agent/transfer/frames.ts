// The data plane's framing: [u32 header length][u32 payload length][header JSON][payload].
// Headers are small and self-describing (shared/stream-frames.ts); payloads are raw bytes (pages,
// file chunks) that are never copied into JSON.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { BufferPool } from './buffer-pool.ts';
import { FRAME_KINDS, type FrameHeader, type FrameKind, MAX_FRAME_HEADER, MAX_FRAME_PAYLOAD, StreamFrameHeader } from '../../shared/stream-frames.ts';

export interface Frame<K extends FrameKind = FrameKind> {
  header: FrameHeader<K>;
  payload: Buffer;
  /** Present on a payload from a pool: call it once nothing reads the payload any more (optional: else the GC takes it). */
  release?: () => void;
}

/** Narrows a frame to kind `t` (a frame's type follows its header's). */
export const isFrame = <K extends FrameKind>(f: Frame, t: K): f is Frame & Frame<K> => f.header.t === t;

export function encodeFrame(header: StreamFrameHeader, payload?: Buffer): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const p = payload ?? Buffer.alloc(0);
  if (h.length > MAX_FRAME_HEADER || p.length > MAX_FRAME_PAYLOAD) throw new FerryError(ErrorCode.Internal, `frame too large (${h.length} + ${p.length} bytes)`);
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32LE(h.length, 0);
  prefix.writeUInt32LE(p.length, 4);
  return p.length ? [prefix, h, p] : [prefix, h];
}

/** Untrusted text in an error message: this much of it says enough. */
const QUOTED = 64;
const ISSUE = 200;

/** A header as the peer sent it, checked against its kind's schema. */
function parseHeader(json: Buffer): StreamFrameHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(json.toString('utf8'));
  } catch {
    throw new FerryError(ErrorCode.BadMessage, 'data stream: frame header is not JSON');
  }
  const t = typeof raw === 'object' && raw !== null && 't' in raw ? raw.t : undefined;
  if (typeof t !== 'string') throw new FerryError(ErrorCode.BadMessage, 'data stream: frame header has no type');
  // Checked first so the error names the kind instead of listing every one the union knows.
  if (!FRAME_KINDS.has(t)) throw new FerryError(ErrorCode.BadMessage, `data stream: unknown frame type ${JSON.stringify(t.slice(0, QUOTED))}`);
  const parsed = StreamFrameHeader.safeParse(raw);
  if (parsed.success) return parsed.data;
  const [first, ...more] = parsed.error.issues;
  const issue = first ? `${first.path.length ? first.path.join('.') : '(header)'}: ${first.message}`.slice(0, ISSUE) : 'invalid';
  throw new FerryError(ErrorCode.BadMessage, `data stream: bad "${t}" frame header: ${issue}${more.length ? ` (+${more.length} more)` : ''}`);
}

/** Payloads at least this large are assembled in pooled buffers (smaller ones cost V8 little). */
const POOLED_PAYLOAD = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Reassembles frames from arbitrary TCP chunks (16 KiB TLS records, 64 KiB reads). A payload
 * that a chunk holds whole is a view of it; a larger one is copied in as its chunks arrive, into
 * a buffer of `pool` when one is given: its frame then has release(), which gives it back.
 */
export class FrameDecoder {
  /** Unparsed bytes of the next frame's prefix and header (and whatever came after them). */
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** A frame whose header is parsed and whose payload is still arriving. */
  #filling: { frame: Frame; filled: number } | null = null;

  constructor(private readonly pool?: BufferPool) {}

  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    let c = chunk;
    for (;;) {
      const f = this.#filling;
      if (f) {
        const n = Math.min(c.length, f.frame.payload.length - f.filled);
        c.copy(f.frame.payload, f.filled, 0, n);
        f.filled += n;
        c = c.subarray(n);
        if (f.filled < f.frame.payload.length) return out;
        out.push(f.frame);
        this.#filling = null;
        continue;
      }
      if (c.length > 0) {
        this.#chunks.push(c);
        this.#buffered += c.length;
        c = EMPTY;
      }
      if (this.#buffered < 8) return out;
      const prefix = this.#peek(8);
      const hl = prefix.readUInt32LE(0);
      const pl = prefix.readUInt32LE(4);
      if (hl > MAX_FRAME_HEADER || pl > MAX_FRAME_PAYLOAD) throw new FerryError(ErrorCode.BadMessage, `data stream: frame lengths ${hl}/${pl} out of bounds`);
      if (this.#buffered < 8 + hl) return out;
      const header = parseHeader(this.#take(8 + hl).subarray(8));
      // What follows the header is this frame's payload, then the next frames.
      const rest = this.#takeAll();
      if (rest.length >= pl) {
        out.push({ header, payload: rest.subarray(0, pl) });
        c = rest.subarray(pl);
        continue;
      }
      this.#filling = { frame: this.#payloadFrame(header, pl), filled: 0 };
      c = rest;
    }
  }

  #payloadFrame(header: StreamFrameHeader, n: number): Frame {
    const pool = this.pool;
    if (!pool || n < POOLED_PAYLOAD) return { header, payload: Buffer.allocUnsafe(n) };
    const payload = pool.take(n);
    let given = false;
    const release = () => {
      if (given) return;
      given = true;
      pool.give(payload);
    };
    return { header, payload, release };
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    return first.length >= n ? first.subarray(0, n) : Buffer.concat(this.#chunks).subarray(0, n);
  }

  #take(n: number): Buffer {
    let buf: Buffer;
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      buf = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.#chunks);
      buf = all.subarray(0, n);
      this.#chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.#buffered -= n;
    return buf;
  }

  #takeAll(): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#buffered = 0;
    return all;
  }
}
