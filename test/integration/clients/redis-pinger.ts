// A redis client that keeps ONE connection open and alternates SET and GET of fresh keys (in
// database 1, so database 0's data can be compared before and after) every few milliseconds
// until SIGTERM, then prints what a user would check as one JSON line: how many commands
// succeeded, any that failed or came back wrong, whether the connection ever dropped, and the
// longest pause between two successful replies. Run inside the lab's client namespace.
//   node --import tsx redis-pinger.ts HOST PORT [INTERVAL_MS [STATUS_FILE]]   (STATUS_FILE: the same JSON, rewritten every 100 ms)
import { renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';


const [host = '127.0.0.1', port = '6379', interval = '5', statusFile] = process.argv.slice(2);
const stats = { ok: 0, sets: 0, failed: 0, wrong: 0, closed: false, error: null as string | null, maxGapMs: 0, lastKey: '' };
// Written whole and renamed into place, so a reader never sees half of it.
if (statusFile) setInterval(() => {
  writeFileSync(`${statusFile}.tmp`, JSON.stringify(stats));
  renameSync(`${statusFile}.tmp`, statusFile);
}, 100).unref();
const sock = net.connect({ host, port: Number(port) });
sock.setNoDelay(true);
let buf = '';
let pending: ((line: string) => void) | null = null;
let last = performance.now();

sock.on('data', (d) => {
  buf += d.toString('latin1');
  for (;;) {
    const i = buf.indexOf('\r\n');
    if (i < 0 || !pending) break;
    // Bulk replies ($n) carry a second line.
    let line = buf.slice(0, i);
    let end = i + 2;
    if (line.startsWith('$') && line !== '$-1') {
      const j = buf.indexOf('\r\n', end);
      if (j < 0) break;
      line = buf.slice(end, j);
      end = j + 2;
    }
    buf = buf.slice(end);
    const p = pending;
    pending = null;
    p(line);
  }
});
const finish = () => {
  // A command still waiting for its reply counts too: a hung connection must show.
  stats.maxGapMs = Math.max(stats.maxGapMs, performance.now() - last);
  process.stdout.write(JSON.stringify(stats) + '\n');
  process.exit(0);
};
sock.on('close', () => {
  stats.closed = true;
  finish();
});
sock.on('error', (e) => {
  stats.error = e.message;
});
// Stops after the command in flight has its reply, so every acknowledged SET is counted.
let stopping = false;
const stop = () => {
  sock.removeAllListeners('close');
  sock.destroy();
  finish();
};
process.on('SIGTERM', () => {
  stopping = true;
  if (!pending) stop();
  else setTimeout(stop, 10_000).unref(); // a reply that never comes still ends it
});

const cmd = (...args: string[]): Promise<string> =>
  new Promise((resolve) => {
    pending = resolve;
    sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });

const replied = () => {
  const now = performance.now();
  stats.maxGapMs = Math.max(stats.maxGapMs, now - last);
  last = now;
};

sock.once('connect', async () => {
  if ((await cmd('SELECT', '1')) !== '+OK') stats.failed++;
  last = performance.now();
  for (let i = 0; ; i++) {
    const key = `pinger:${process.pid}:${i}`;
    const set = await cmd('SET', key, String(i));
    replied();
    if (set !== '+OK') stats.failed++;
    else stats.sets++;
    if (stopping) return stop();
    const got = await cmd('GET', key);
    replied();
    if (got !== String(i)) stats.wrong++;
    else stats.ok += 2;
    stats.lastKey = key;
    if (stopping) return stop();
    await new Promise((r) => setTimeout(r, Number(interval)));
    if (stopping) return stop();
  }
});
