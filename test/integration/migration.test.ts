// Migrations through the real coordinator, agents and NATS in a real lab. What the engine cannot
// carry yet must be refused by preflight, before anything is frozen, and leave the workload
// running where it was (exit code 3), with the migration's record saying why.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationView } from '../../shared/migration.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry, ferryJson } from './helpers/cli.ts';

const env = { FERRY_LAB: 'itmig' };

describe('migration through the coordinator', () => {
  const out = `/tmp/ferry-it-mig-${process.pid}`;
  let w: WorkloadInfo;

  beforeAll(async () => {
    await ferry(['lab', 'down'], env);
    await ferryJson(['lab', 'up', '--hosts', '2'], env);
    w = await ferryJson<WorkloadInfo>(['run', '--host', 'h1', '--name', 'ctr', '--', '/bin/sh', '-c', `i=0; while :; do i=$((i+1)); echo $i > ${out}; sleep 0.05; done`], env);
  });
  afterAll(async () => {
    await ferry(['lab', 'down'], env);
  });

  it('refuses what the engine cannot carry at preflight, rolls back, and the workload runs on at its source', async () => {
    const r = await ferry(['migrate', 'ctr', '--to', 'h2', '--json'], env);
    expect(r.code).toBe(3);
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v).toMatchObject({ workload: 'ctr', from: 'h1', to: 'h2', outcome: 'rolledBack', committed: false, downtimeMs: null, bytesTransferred: 0 });
    expect(v.error).toMatchObject({ code: 'FERRY_UNSUPPORTED', phase: 'preflight' });
    // It names the process and the resource kind (the engine does not carry trees or pid namespaces yet).
    expect(v.error?.message).toMatch(/^pid \d+ process: (child process|pid namespace) is not supported/);
    expect(v.phases.map((p) => p.phase)).toEqual(['preflight']);

    // Still running where it was, never frozen: its counter keeps moving.
    const ps = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(ps).toMatchObject([{ name: 'ctr', host: 'h1', state: 'running', rootPid: w.rootPid }]);
    const a = Number(readFileSync(out, 'utf8'));
    await sleep(300);
    expect(Number(readFileSync(out, 'utf8'))).toBeGreaterThan(a);

    const history = await ferryJson<MigrationView[]>(['history'], env);
    expect(history.map((h) => [h.id, h.outcome])).toContainEqual([v.id, 'rolledBack']);
    const one = await ferryJson<MigrationView>(['status', v.id], env);
    expect(one.outcome).toBe('rolledBack');
    const cancel = await ferry(['cancel', v.id], env);
    expect(cancel.code).toBe(2);
    expect(cancel.stderr).toContain('already ended');
  });

  it('rejects invalid requests with exit code 2 and records nothing', async () => {
    const before = (await ferryJson<MigrationView[]>(['history'], env)).length;
    for (const [args, text] of [
      [['migrate', 'ctr', '--to', 'h1'], 'already runs on h1'],
      [['migrate', 'ctr', '--to', 'h9'], 'unknown host "h9"'],
      [['migrate', 'ghost', '--to', 'h2'], 'no running workload named "ghost"'],
    ] as const) {
      const r = await ferry([...args], env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(text);
    }
    expect(await ferryJson<MigrationView[]>(['history'], env)).toHaveLength(before);
  });
});
