// The data plane's framing: [u32 header length][u32 payload length][header JSON][payload].
// Headers are small and self-describing; payloads are raw bytes (pages, file chunks) that are
// never copied into JSON.
import { ErrorCode, FerryError } from '../../shared/errors.ts';

export const MAX_HEADER = 64 * 1024;
export const MAX_PAYLOAD = 64 * 1024 * 1024;

export interface Frame<H = Record<string, unknown>> {
  header: H & { t: string };
  payload: Buffer;
}

export function encodeFrame(header: { t: string } & Record<string, unknown>, payload?: Buffer): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const p = payload ?? Buffer.alloc(0);
  if (h.length > MAX_HEADER || p.length > MAX_PAYLOAD) throw new FerryError(ErrorCode.Internal, `frame too large (${h.length} + ${p.length} bytes)`);
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32LE(h.length, 0);
  prefix.writeUInt32LE(p.length, 4);
  return p.length ? [prefix, h, p] : [prefix, h];
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
      if (hl > MAX_HEADER || pl > MAX_PAYLOAD) throw new FerryError(ErrorCode.BadMessage, `data stream: frame lengths ${hl}/${pl} out of bounds`);
      if (this.#buffered < 8 + hl + pl) break;
      const all = this.#take(8 + hl + pl);
      let header: Frame['header'];
      try {
        header = JSON.parse(all.subarray(8, 8 + hl).toString('utf8')) as Frame['header'];
      } catch {
        throw new FerryError(ErrorCode.BadMessage, 'data stream: frame header is not JSON');
      }
      if (typeof header?.t !== 'string') throw new FerryError(ErrorCode.BadMessage, 'data stream: frame header has no type');
      out.push({ header, payload: all.subarray(8 + hl) });
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
