// Moves a checkpoint image directory over a data stream: every file in chunks, each with its
// SHA-256, then an acknowledgement of the whole. The receiver writes into a temporary directory
// and renames it into place only when everything arrived intact.
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { errorMessage } from '../../shared/stream-frames.ts';
import type { DataConnection } from '../transfer/stream.ts';

const CHUNK = 4 * 1024 * 1024;

export interface TransferStats {
  files: number;
  bytes: number;
  bytesOnWire: number;
  ms: number;
}

export async function sendImageDir(conn: DataConnection, dir: string): Promise<TransferStats> {
  const t0 = performance.now();
  const files = readdirSync(dir).filter((f) => statSync(path.join(dir, f)).isFile());
  let bytes = 0;
  const buf = Buffer.allocUnsafe(CHUNK);
  for (const name of files) {
    const size = statSync(path.join(dir, name)).size;
    await conn.send({ t: 'file', name, size });
    const hash = createHash('sha256');
    const fd = openSync(path.join(dir, name), 'r');
    try {
      for (let off = 0; off < size; ) {
        const n = readSync(fd, buf, 0, Math.min(CHUNK, size - off), off);
        if (n <= 0) throw new FerryError(ErrorCode.Internal, `${name} shrank while being sent`);
        const chunk = buf.subarray(0, n);
        hash.update(chunk);
        // The frame is handed to the socket before the buffer is reused: send() resolves once written.
        await conn.send({ t: 'data' }, Buffer.from(chunk));
        off += n;
      }
    } finally {
      closeSync(fd);
    }
    await conn.send({ t: 'eof', sha256: hash.digest('hex') });
    bytes += size;
  }
  await conn.send({ t: 'done', files: files.length, bytes });
  const ack = await conn.expect('ack');
  if (ack.header.bytes !== bytes) throw new FerryError(ErrorCode.Internal, `receiver acknowledged ${ack.header.bytes} of ${bytes} bytes`);
  return { files: files.length, bytes, bytesOnWire: conn.bytesSent, ms: performance.now() - t0 };
}

export async function receiveImageDir(conn: DataConnection, dir: string): Promise<TransferStats> {
  const t0 = performance.now();
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  let files = 0;
  let bytes = 0;
  try {
    for (;;) {
      const f = await conn.next();
      if (!f) throw new FerryError(ErrorCode.Unavailable, 'data stream closed before the image was complete');
      if (f.header.t === 'done') break;
      if (f.header.t !== 'file') throw new FerryError(ErrorCode.BadMessage, `data stream: unexpected "${f.header.t}"`);
      const { name, size } = f.header;
      if (name !== path.basename(name) || name.startsWith('.')) throw new FerryError(ErrorCode.BadMessage, `data stream: bad file name "${name}"`);
      const fd = openSync(path.join(tmp, name), 'w');
      const hash = createHash('sha256');
      let written = 0;
      try {
        for (;;) {
          const d = await conn.next();
          if (!d) throw new FerryError(ErrorCode.Unavailable, `data stream closed inside ${name}`);
          if (d.header.t === 'eof') {
            if (d.header.sha256 !== hash.digest('hex')) throw new FerryError(ErrorCode.BadImage, `${name} arrived corrupted (checksum mismatch)`);
            break;
          }
          if (d.header.t !== 'data') throw new FerryError(ErrorCode.BadMessage, `data stream: unexpected "${d.header.t}" inside ${name}`);
          writeSync(fd, d.payload, 0, d.payload.length, written);
          hash.update(d.payload);
          written += d.payload.length;
        }
      } finally {
        closeSync(fd);
      }
      if (written !== size) throw new FerryError(ErrorCode.BadImage, `${name}: ${written} bytes arrived, ${size} announced`);
      files++;
      bytes += written;
    }
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    await conn.send({ t: 'ack', bytes });
    return { files, bytes, bytesOnWire: conn.bytesReceived, ms: performance.now() - t0 };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    await conn.send({ t: 'error', message: errorMessage((err as Error).message) }).catch(() => undefined);
    throw err;
  }
}
