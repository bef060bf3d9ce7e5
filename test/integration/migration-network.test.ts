// Networked services migrate with their address and their live connections: real servers in
// ferry containers (redis-server from Debian, python3's http.server, a UDP echo service), real
// clients in the lab's client namespace that keep one connection open throughout.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationView } from '../../shared/migration.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { freshLab, labEnv, untilHosts } from './helpers/lab.ts';
import { LabClient, clientNamespace, inClient } from './helpers/lab-clients.ts';

const env = labEnv('itnetmig');

interface RedisStats {
  ok: number;
  sets: number;
  failed: number;
  wrong: number;
  closed: boolean;
  error: string | null;
  maxGapMs: number;
}
interface UdpStats {
  sent: number;
  echoed: number;
  wrong: number;
  maxGapMs: number;
  lastEchoAfterStartMs: number;
}
interface Download {
  status: number;
  bytes: number;
  sha256: string;
  error: string | null;
  maxGapMs: number;
}

async function migrate(name: string, to: string, expectOutcome: MigrationView['outcome'] = 'completed'): Promise<MigrationView> {
  const r = await ferry(['migrate', name, '--to', to, '--json'], env);
  const v = JSON.parse(r.stdout) as MigrationView;
  expect(v.outcome, `${name} -> ${to}: ${v.error?.message ?? ''}`).toBe(expectOutcome);
  return v;
}

describe('network handoff: services keep their address and their connections', () => {
  let ns: string;

  beforeAll(async () => {
    await freshLab(env);
    ns = await clientNamespace(env);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
  });

  describe('redis-server with about 1 GiB of data', () => {
    let addr: string;
    const cli = (...args: string[]) => inClient(ns, ['redis-cli', '-h', addr, ...args]);
    let digest: string;

    beforeAll(async () => {
      const w = await ferryJson<WorkloadInfo>(
        ['run', '--host', 'h1', '--name', 'redis', '--', '/usr/bin/redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--enable-debug-command', 'yes'],
        env,
      );
      addr = w.address!;
      for (let i = 0; (await cli('ping').catch(() => '')) !== 'PONG'; i++) {
        if (i > 100) throw new Error('redis did not answer');
        await sleep(50);
      }
      // A million 1000-byte values.
      expect(await cli('debug', 'populate', '1000000', 'key', '1000')).toBe('OK');
      digest = await cli('debug', 'digest');
    });

    it('one client connection works through h1 -> h2 -> h1 without reconnecting; no command fails; every key is there', async () => {
      const pinger = new LabClient<RedisStats>(ns, 'redis-pinger.ts', [addr, '6379', '5'], { statusFile: true });
      await pinger.until((s) => s.ok > 100);
      for (const to of ['h2', 'h1']) {
        const v = await migrate('redis', to);
        expect((await ferryJson<WorkloadInfo[]>(['ps'], env)).find((p) => p.name === 'redis')).toMatchObject({ host: to, address: addr, state: 'running' });
        // The same connection carries on after the move.
        const at = pinger.status()!.ok;
        await pinger.until((s) => s.ok > at + 100);
        expect(v.downtimeMs).toBeGreaterThan(0);
      }
      const s = await pinger.stop();
      expect(s).toMatchObject({ failed: 0, wrong: 0, closed: false, error: null });
      // Every key the client wrote is there, and the data it did not touch is unchanged.
      expect(Number(await cli('-n', '1', 'dbsize'))).toBe(s.sets);
      await cli('-n', '1', 'flushdb');
      expect(await cli('dbsize')).toBe('1000000');
      expect(await cli('debug', 'digest')).toBe(digest);
    });

    it('a rollback in the middle (destination killed before commit): the client keeps working against the source', async () => {
      const pinger = new LabClient<RedisStats>(ns, 'redis-pinger.ts', [addr, '6379', '5'], { statusFile: true });
      await pinger.until((s) => s.ok > 100);
      await ferry(['lab', 'kill', 'h2'], env);
      // `lab start` returns once the coordinator sees the new agent alive.
      expect((await ferry(['lab', 'start', 'h2', '--env', 'FERRY_FAULT=agent:restore:after'], env)).code).toBe(0);
      const migrating = migrate('redis', 'h2', 'rolledBack');
      // The destination dies having built the tree; it comes back after the coordinator saw it lost.
      while ((await ferryJson<{ hosts: { name: string; agent: { running: boolean } }[] }>(['lab', 'status'], env)).hosts.find((h) => h.name === 'h2')!.agent.running) await sleep(100);
      await untilHosts(env, 'the coordinator sees h2 lost', (hs) => hs.some((h) => h.name === 'h2' && !h.alive));
      expect((await ferry(['lab', 'start', 'h2'], env)).code).toBe(0);
      const v = await migrating;
      expect(v.agentsLost.map((a) => a.role)).toContain('destination');
      expect((await ferryJson<WorkloadInfo[]>(['ps'], env)).filter((p) => p.name === 'redis')).toMatchObject([{ host: 'h1', address: addr, state: 'running' }]);
      const at = pinger.status()!.ok;
      await pinger.until((s) => s.ok > at + 100);
      const s = await pinger.stop();
      expect(s).toMatchObject({ failed: 0, wrong: 0, closed: false, error: null });
      await ferry(['stop', 'redis'], env);
    });
  });

  it('an HTTP download that starts before the migration completes after it with the right checksum', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-http-'));
    const body = randomBytes(48 << 20);
    writeFileSync(path.join(dir, 'big.bin'), body);
    const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'web', '--cwd', dir, '--', '/usr/bin/python3', '-m', 'http.server', '8080', '--bind', '0.0.0.0'], env);
    for (let i = 0; !(await inClient(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${w.address}:8080/`]).catch(() => '')).startsWith('200'); i++) {
      if (i > 100) throw new Error('http.server did not answer');
      await sleep(50);
    }
    // About 8 s at 6 MB/s: the migration happens in the middle.
    const download = new LabClient<Download>(ns, 'http-download.ts', [`http://${w.address}:8080/big.bin`, String(6_000_000)]);
    await sleep(1_500);
    await migrate('web', 'h2');
    const d = await download.done();
    expect(d).toMatchObject({ status: 200, error: null, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    await ferry(['stop', 'web'], env);
  });

  it('a UDP echo service keeps answering at the same address', async () => {
    const echo = 'import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(("0.0.0.0", 7007))\nwhile True:\n  d,a=s.recvfrom(2048)\n  s.sendto(d,a)\n';
    const w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'echo', '--', '/usr/bin/python3', '-c', echo], env);
    const pinger = new LabClient<UdpStats>(ns, 'udp-pinger.ts', [w.address!, '7007', '10'], { statusFile: true });
    await pinger.until((s) => s.echoed > 20);
    for (const to of ['h2', 'h1']) {
      await migrate('echo', to);
      const at = pinger.status()!.echoed;
      await pinger.until((s) => s.echoed > at + 20);
    }
    const s = await pinger.stop();
    expect(s.wrong).toBe(0);
    // Datagrams sent while it was frozen are lost, as UDP allows; the rest come back.
    expect(s.echoed).toBeGreaterThan(s.sent / 2);
    await ferry(['stop', 'echo'], env);
  });
});
