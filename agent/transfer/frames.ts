// The data plane's framing: [u32 header length][u32 payload length][header JSON][payload].
// Headers are small and self-describing (shared/stream-frames.ts); payloads are raw bytes (pages,
// file chunks) that are never copied into JSON.
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { FRAME_KINDS, type FrameHeader, type FrameKind, MAX_FRAME_HEADER, MAX_FRAME_PAYLOAD, StreamFrameHeader } from '../../shared/stream-frames.ts';

export interface Frame<K extends FrameKind = FrameKind> {
  header: FrameHeader<K>;
  payload: Buffer;
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

/** Reassembles frames from arbitrary TCP chunks. */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;

  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.#buffered < 8) break;
      const prefix = this.#peek(8);
      const hl = prefix.readUInt32LE(0);
      const pl = prefix.readUInt32LE(4);
      if (hl > MAX_FRAME_HEADER || pl > MAX_FRAME_PAYLOAD) throw new FerryError(ErrorCode.BadMessage, `data stream: frame lengths ${hl}/${pl} out of bounds`);
      if (this.#buffered < 8 + hl + pl) break;
      const all = this.#take(8 + hl + pl);
      out.push({ header: parseHeader(all.subarray(8, 8 + hl)), payload: all.subarray(8 + hl) });
    }
    return out;
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
}
