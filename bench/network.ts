// The client-visible pause of a networked service across a migration, next to the downtime
// ferry reports for it: redis-server loaded with data in a lab container, one client connection
// issuing SET/GET every 5 ms from the lab's client namespace; the pause is the longest gap
// between two successful replies on that connection. Stop-and-copy and pre-copy, in one lab and
// one run. Prints a table and saves bench/results/network.json.
// Usage: node --import tsx bench/network.ts   (FERRY_BENCH_REDIS_KEYS, default 1000000 x 1000 bytes;
//        FERRY_BENCH_REPEATS, default 3)
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationView } from '../shared/migration.ts';
import type { WorkloadInfo } from '../shared/workload.ts';
import { REPO, ferry, ferryJson } from '../test/integration/helpers/cli.ts';
import { LabClient, clientNamespace, inClient } from '../test/integration/helpers/lab-clients.ts';

const env = { FERRY_LAB: 'benchnet' };
const keys = Number(process.env.FERRY_BENCH_REDIS_KEYS ?? 1_000_000);
const repeats = Number(process.env.FERRY_BENCH_REPEATS ?? 3);

interface RedisStats {
  ok: number;
  failed: number;
  wrong: number;
  closed: boolean;
  maxGapMs: number;
}
interface Row {
  mode: string;
  from: string;
  to: string;
  outcome: string | null;
  downtimeMs: number | null;
  predictedDowntimeMs: number | null;
  clientPauseMs: number;
  failedCommands: number;
  connectionDropped: boolean;
  totalMs: number | null;
  bytesTransferred: number;
  rounds: number;
}

await ferry(['lab', 'down'], env);
await ferryJson(['lab', 'up', '--hosts', '2'], env);
const rows: Row[] = [];
try {
  const ns = await clientNamespace(env);
  const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'redis', '--', '/usr/bin/redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--enable-debug-command', 'yes'], env);
  const cli = (...args: string[]) => inClient(ns, ['redis-cli', '-h', w.address!, ...args]);
  while ((await cli('ping').catch(() => '')) !== 'PONG') await sleep(50);
  await cli('debug', 'populate', String(keys), 'key', '1000');
  const rss = (await ferryJson<WorkloadInfo[]>(['ps'], env)).find((p) => p.name === 'redis')!.memoryBytes;
  process.stderr.write(`redis: ${keys} keys, ${(rss / 2 ** 20).toFixed(0)} MiB resident\n`);
  let at = 'h1';
  for (const mode of ['stop-and-copy', 'precopy']) {
    for (let i = 0; i < repeats; i++) {
      const to = at === 'h1' ? 'h2' : 'h1';
      const pinger = new LabClient<RedisStats>(ns, 'redis-pinger.ts', [w.address!, '6379', '5'], { statusFile: true });
      await pinger.until((s) => s.ok > 100);
      const r = await ferry(['migrate', 'redis', '--to', to, '--json', mode === 'precopy' ? '--precopy' : '--stop-and-copy'], env);
      const v = JSON.parse(r.stdout) as MigrationView & { predictedDowntimeMs?: number | null };
      if (v.outcome === 'completed') at = to;
      const ok = pinger.status()?.ok ?? 0;
      await pinger.until((s) => s.ok > ok + 100, 60_000).catch(() => undefined);
      const s = await pinger.stop();
      const row: Row = {
        mode,
        from: v.from,
        to: v.to,
        outcome: v.outcome,
        downtimeMs: v.downtimeMs,
        predictedDowntimeMs: v.predictedDowntimeMs ?? null,
        clientPauseMs: Math.round(s.maxGapMs),
        failedCommands: s.failed + s.wrong,
        connectionDropped: s.closed,
        totalMs: v.totalMs,
        bytesTransferred: v.bytesTransferred,
        rounds: v.rounds.length,
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  }
  // Issue 12's target: the pause a client sees is at most the downtime plus 20 ms.
  const live = rows.filter((x) => x.mode !== 'stop-and-copy' && x.outcome === 'completed' && x.downtimeMs !== null);
  const excess = live.map((x) => x.clientPauseMs - (x.downtimeMs ?? 0));
  const pauseTarget = {
    target: 'client pause <= downtime + 20 ms (pre-copy)',
    value: live.length ? `pause - downtime: ${excess.map((e) => `${e} ms`).join(', ')}` : 'not run',
    met: live.length > 0 && excess.every((e) => e <= 20),
  };
  const result = { when: new Date().toISOString(), redisKeys: keys, residentBytes: rss, rows, targets: [pauseTarget] };
  mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(path.join(REPO, 'bench/results/network.json'), JSON.stringify(result, null, 2));
  console.log(`redis, ${(rss / 2 ** 20).toFixed(0)} MiB resident, one client connection (SET+GET every 5 ms)`);
  console.log('mode           outcome     downtime  predicted  client pause  failed  dropped  rounds');
  for (const x of rows)
    console.log(
      `${x.mode.padEnd(14)} ${String(x.outcome).padEnd(11)} ${String(x.downtimeMs ?? '-').padStart(6)} ms ${String(x.predictedDowntimeMs ?? '-').padStart(6)} ms ${String(x.clientPauseMs).padStart(8)} ms ${String(x.failedCommands).padStart(7)} ${String(x.connectionDropped).padStart(8)} ${String(x.rounds).padStart(7)}`,
    );
  console.log(`${pauseTarget.met ? 'MET   ' : 'MISSED'} ${pauseTarget.target}: ${pauseTarget.value}`);
} finally {
  await ferry(['lab', 'down'], env);
}
