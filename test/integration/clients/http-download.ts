// Downloads one URL over one connection, slowly (a bounded rate, so that it is still running
// when a migration happens), and prints one JSON line: bytes received, their SHA-256, the HTTP
// status, any error, and the longest pause between two chunks. Run inside the lab's client namespace.
//   node --import tsx http-download.ts URL BYTES_PER_SECOND
import { createHash } from 'node:crypto';
import http from 'node:http';

const [url = '', rate = '10000000'] = process.argv.slice(2);
const out = { status: 0, bytes: 0, sha256: '', error: null as string | null, maxGapMs: 0, ms: 0 };
const hash = createHash('sha256');
const t0 = performance.now();
let last = t0;
const done = () => {
  out.sha256 = hash.digest('hex');
  out.ms = performance.now() - t0;
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
};
http
  .get(url, (res) => {
    out.status = res.statusCode ?? 0;
    res.on('data', (chunk: Buffer) => {
      const now = performance.now();
      out.maxGapMs = Math.max(out.maxGapMs, now - last);
      last = now;
      hash.update(chunk);
      out.bytes += chunk.length;
      // Hold the stream back to the given rate: the server's socket fills and waits.
      const ahead = (out.bytes / Number(rate)) * 1000 - (now - t0);
      if (ahead > 5) {
        res.pause();
        setTimeout(() => res.resume(), ahead);
      }
    });
    res.on('end', done);
    res.on('error', (e) => {
      out.error = e.message;
      done();
    });
  })
  .on('error', (e) => {
    out.error = e.message;
    done();
  });
