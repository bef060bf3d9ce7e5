// The cost of the data stream's encryption (BENCH_STREAM=1 npm run bench:migrate), in one lab and
// one run: throughput h1 -> h2 of an authenticated stream encrypted (TLS 1.3) and in clear (the
// `stream.encrypt: false` mode of both agents), next to raw TCP between the same namespaces; and
// the downtime of the same workload moved live and by stop-and-copy with the agents encrypting,
// then with both agents configured for clear streams. Writes bench/results/stream.json.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkloadInfo } from '../shared/workload.ts';

export interface StreamBenchDeps {
  repo: string;
  lab: string;
  ferry: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  migrate: (name: string, to: string, extra?: string[]) => Promise<{ downtimeMs: number; bytesOnWire: number; phases: Record<string, number> }>;
  runWorkload: (kind: 'memwriter', name: string, args: string[]) => Promise<unknown>;
  rawTcpMBps: () => Promise<number>;
  median: (xs: number[]) => number;
}

const PORT = 7499;
const MIB = Number(process.env.BENCH_STREAM_MIB ?? 1024);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);

/** Best of `REPEATS` streams of MIB h1 -> h2, through a receiver in h2's namespace. */
async function measureStream(d: StreamBenchDeps, encrypt: boolean): Promise<number[]> {
  const pki = path.join(process.env.FERRY_LAB_ROOT ?? '/var/tmp/ferry', d.lab, 'pki');
  const peer = path.join(d.repo, 'bench/stream-peer.ts');
  const e = encrypt ? '1' : '0';
  const ns = (h: string) => `ferry-${d.lab}-${h}`;
  const recv = spawn('ip', ['netns', 'exec', ns('h2'), process.execPath, '--import', 'tsx', peer, 'recv', pki, '10.77.0.12', String(PORT), e, String(REPEATS)], { cwd: d.repo, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => recv.once('exit', r));
  await new Promise<void>((resolve, reject) => {
    recv.stdout.once('data', () => resolve());
    void exited.then(() => reject(new Error('the stream receiver exited before it was ready')));
  });
  const out: number[] = [];
  for (let i = 1; i <= REPEATS; i++) {
    const child = spawn('ip', ['netns', 'exec', ns('h1'), process.execPath, '--import', 'tsx', peer, 'send', pki, '10.77.0.12', String(PORT), e, String(i), String(MIB)], { cwd: d.repo, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString()));
    await new Promise((r) => child.once('close', r));
    const r = JSON.parse(text.trim()) as { encrypted: boolean; MBps: number };
    if (r.encrypted !== encrypt) throw new Error(`stream ${i} was ${r.encrypted ? 'encrypted' : 'clear'}, asked ${encrypt ? 'encrypted' : 'clear'}`);
    out.push(r.MBps);
  }
  await exited;
  return out;
}

/** Rewrites both agents' stream setting and restarts them (their workloads run on meanwhile). */
async function setEncrypt(d: StreamBenchDeps, encrypt: boolean): Promise<void> {
  for (const h of ['h1', 'h2']) {
    const file = path.join(process.env.FERRY_LAB_ROOT ?? '/var/tmp/ferry', d.lab, 'agents', `${h}.json`);
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...cfg, stream: { encrypt } }, null, 2));
    await d.ferry(['lab', 'kill', h]);
    const r = await d.ferry(['lab', 'start', h]);
    if (r.code !== 0) throw new Error(`lab start ${h}: ${r.stderr}`);
  }
  for (const deadline = Date.now() + 60_000; ; ) {
    const hosts = JSON.parse((await d.ferry(['hosts', '--json'])).stdout || '[]') as { name: string; alive: boolean; facts?: { dataStream?: { encrypt: boolean } | null } }[];
    if (hosts.length === 2 && hosts.every((h) => h.alive && h.facts?.dataStream?.encrypt === encrypt)) return;
    if (Date.now() > deadline) throw new Error('agents did not come back with the new stream setting');
    await sleep(300);
  }
}

interface Mode {
  streamMBps: number[];
  liveDowntimeMs: number[];
  stopAndCopyDowntimeMs: number;
  stopAndCopyTransferMs: number;
}

/** Live moves back and forth, then one stop-and-copy; returns the workload to h1. */
async function downtimes(d: StreamBenchDeps, name: string): Promise<Omit<Mode, 'streamMBps'>> {
  const live: number[] = [];
  let at = 'h1';
  for (let i = 0; i < REPEATS * 2; i++) {
    const to = at === 'h1' ? 'h2' : 'h1';
    live.push((await d.migrate(name, to)).downtimeMs);
    at = to;
  }
  const sc = await d.migrate(name, at === 'h1' ? 'h2' : 'h1', ['--stop-and-copy']);
  // Back where it started, so the next mode's moves start from h1 too.
  await d.migrate(name, at);
  return { liveDowntimeMs: live, stopAndCopyDowntimeMs: sc.downtimeMs, stopAndCopyTransferMs: sc.phases.transfer ?? Number.NaN };
}

export async function streamBench(d: StreamBenchDeps): Promise<void> {
  const rawTcp = await d.rawTcpMBps();
  process.stderr.write(`raw TCP h1->h2 ${rawTcp} MB/s\n`);
  const name = 'bstream';
  await d.runWorkload('memwriter', name, ['256', '50', 'hotset']);
  const resident = (JSON.parse((await d.ferry(['ps', '--json'])).stdout) as WorkloadInfo[]).find((w) => w.name === name)?.memoryBytes ?? 0;
  const modes: Record<'encrypted' | 'clear', Mode> = {} as never;
  try {
    for (const mode of ['encrypted', 'clear'] as const) {
      const encrypt = mode === 'encrypted';
      if (!encrypt) await setEncrypt(d, false);
      const streamMBps = await measureStream(d, encrypt);
      process.stderr.write(`${mode}: stream ${streamMBps.join('/')} MB/s\n`);
      modes[mode] = { streamMBps, ...(await downtimes(d, name)) };
      process.stderr.write(`${mode}: ${JSON.stringify(modes[mode])}\n`);
    }
  } finally {
    await d.ferry(['stop', name]);
  }
  const best = (m: Mode) => Math.max(...m.streamMBps);
  const { encrypted: enc, clear } = modes;
  const result = {
    at: new Date().toISOString(),
    repeats: REPEATS,
    streamMiB: MIB,
    workload: { kind: 'memwriter 256 MiB 50 MB/s hotset', residentMiB: Math.round(resident / (1 << 20)) },
    rawTcpMBps: rawTcp,
    modes,
    ratios: {
      streamEncryptedOverClear: Math.round((best(enc) / best(clear)) * 100) / 100,
      streamEncryptedOverRawTcp: Math.round((best(enc) / rawTcp) * 100) / 100,
      streamClearOverRawTcp: Math.round((best(clear) / rawTcp) * 100) / 100,
      liveDowntimeEncryptedOverClear: Math.round((d.median(enc.liveDowntimeMs) / d.median(clear.liveDowntimeMs)) * 100) / 100,
      stopAndCopyDowntimeEncryptedOverClear: Math.round((enc.stopAndCopyDowntimeMs / clear.stopAndCopyDowntimeMs) * 100) / 100,
    },
  };
  mkdirSync(path.join(d.repo, 'bench/results'), { recursive: true });
  writeFileSync(path.join(d.repo, 'bench/results/stream.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`raw TCP h1->h2: ${rawTcp} MB/s`);
  for (const [m, v] of Object.entries(modes)) {
    console.log(`${m.padEnd(9)} stream best ${best(v)} MB/s (${v.streamMBps.join('/')}), live downtime median ${d.median(v.liveDowntimeMs)} ms (${v.liveDowntimeMs.join('/')}), stop-and-copy ${v.stopAndCopyDowntimeMs} ms (transfer ${v.stopAndCopyTransferMs} ms)`);
  }
  console.log(`ratios: ${JSON.stringify(result.ratios)}`);
}
