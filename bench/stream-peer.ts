// One end of the data-stream throughput benchmark (bench/stream.ts), run inside a lab host's
// namespace with that host's lab identity: `recv` takes `count` streams of the benchmark's
// migrations from agent.h1, `send` sends MiB through one and prints its MB/s.
//   stream-peer.ts recv <pkiDir> <address> <port> <encrypt 0|1> <count>
//   stream-peer.ts send <pkiDir> <address> <port> <encrypt 0|1> <id> <MiB>
import path from 'node:path';
import { loadCredentials } from '../agent/transfer/auth.ts';
import { StreamServer } from '../agent/transfer/stream-server.ts';
import { connectStream } from '../agent/transfer/stream.ts';

const [mode, pki, address, port, encrypt, a, b] = process.argv.slice(2) as [string, string, string, string, string, string, string];
const identity = (host: string) => loadCredentials(host, { ca: path.join(pki, 'ca.crt'), cert: path.join(pki, `agent.${host}.crt`), key: path.join(pki, `agent.${host}.key`) });

if (mode === 'recv') {
  const server = await StreamServer.open({ address, port: Number(port), credentials: identity('h2'), encrypt: encrypt === '1' });
  console.log('ready');
  for (let i = 1; i <= Number(a); i++) {
    const conn = await server.expect(`m-bench-stream-${i}`, 'h1').accept({ timeoutMs: 120_000 });
    // The image transfer's frames: data chunks, then done, answered by ack.
    let bytes = 0;
    for (let f = await conn.next(); f && f.header.t !== 'done'; f = await conn.next()) {
      bytes += f.payload.length;
      f.release?.();
    }
    await conn.send({ t: 'ack', bytes });
    await conn.end();
  }
  server.close();
} else {
  const conn = await connectStream({ host: address, port: Number(port) }, { migrationId: `m-bench-stream-${a}`, peer: 'h2', credentials: identity('h1'), encrypt: encrypt === '1' });
  const payload = Buffer.alloc(4 << 20, 7);
  const n = Math.ceil(Number(b) / 4);
  const t = performance.now();
  for (let i = 0; i < n; i++) await conn.send({ t: 'data' }, payload);
  await conn.send({ t: 'done', files: 0, bytes: n * payload.length });
  await conn.expect('ack');
  const s = (performance.now() - t) / 1000;
  console.log(JSON.stringify({ encrypted: conn.encrypted, MBps: Math.round((n * payload.length) / 1e6 / s) }));
  conn.destroy();
}
