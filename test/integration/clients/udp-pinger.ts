// Sends a numbered datagram to a UDP echo service every few milliseconds until SIGTERM and
// prints one JSON line: datagrams sent, echoes received (and any that came back altered), and
// the longest pause between two echoes. Run inside the lab's client namespace.
//   node --import tsx udp-pinger.ts HOST PORT [INTERVAL_MS [STATUS_FILE]]   (STATUS_FILE: the same JSON, rewritten every 100 ms)
import dgram from 'node:dgram';
import { renameSync, writeFileSync } from 'node:fs';

const [host = '127.0.0.1', port = '7', interval = '10', statusFile] = process.argv.slice(2);
const out = { sent: 0, echoed: 0, wrong: 0, maxGapMs: 0, lastEchoAfterStartMs: 0 };
const sock = dgram.createSocket('udp4');
const t0 = performance.now();
let last = t0;
sock.on('message', (m) => {
  if (!/^ferry-udp-\d+$/.test(m.toString())) out.wrong++;
  const now = performance.now();
  out.maxGapMs = Math.max(out.maxGapMs, now - last);
  last = now;
  out.lastEchoAfterStartMs = now - t0;
  out.echoed++;
});
// Written whole and renamed into place, so a reader never sees half of it.
if (statusFile) setInterval(() => {
  writeFileSync(`${statusFile}.tmp`, JSON.stringify(out));
  renameSync(`${statusFile}.tmp`, statusFile);
}, 100).unref();
const timer = setInterval(() => {
  sock.send(`ferry-udp-${out.sent++}`, Number(port), host);
}, Number(interval));
process.on('SIGTERM', () => {
  clearInterval(timer);
  out.maxGapMs = Math.max(out.maxGapMs, performance.now() - last);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
});
