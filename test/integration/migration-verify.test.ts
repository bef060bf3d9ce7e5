// Verification before the commit point, in a real lab: a destination armed to damage what it
// restored (FERRY_FAULT corrupt-byte / corrupt-flag) is caught by verification, the migration
// rolls back (exit 3, the error names the process, the resource and the field), and the
// workload keeps running exactly once on its source with its own checks passing. Unarmed, the
// same migration passes verification and the report says what was compared.
import { describe, expect, it } from 'vitest';
import type { MigrationView } from '../../shared/migration.ts';
import { ferry } from './helpers/cli.ts';
import { allAlive, labEnv, useLab } from './helpers/lab.ts';
import { expectRunsOnceOn, progresses, runOnLab, status, type LabWorkload } from './helpers/lab-workloads.ts';

const env = labEnv('itver');
// A migration takes seconds on an idle machine but minutes on a shared, overloaded one.
const SLOW = 600_000;

async function armH2(fault: string | null): Promise<void> {
  await ferry(['lab', 'kill', 'h2'], env);
  const r = await ferry(['lab', 'start', 'h2', ...(fault ? ['--env', `FERRY_FAULT=${fault}`] : [])], env);
  expect(r.code, r.stderr).toBe(0);
  await allAlive(env);
}

async function migrate(name: string, to: string, extra: string[] = []): Promise<{ code: number; view: MigrationView }> {
  const r = await ferry(['migrate', name, '--to', to, '--json', ...extra], env);
  return { code: r.code, view: JSON.parse(r.stdout) as MigrationView };
}

describe('verification before the commit point', () => {
  useLab(env);
  let w: LabWorkload;

  const cases: Array<[string, string[], RegExp]> = [
    ['agent:restore:corrupt-byte', [], /^verification failed: pid \d+ \(host pid \d+\) memory page 0x[0-9a-f]+ byte \d+: expected/],
    ['agent:restore:corrupt-flag', [], /^verification failed: pid 1 \(host pid \d+\) status SigIgn: expected 0x[0-9a-f]+, found 0x[0-9a-f]+/],
    ['agent:restore:corrupt-byte', ['--stop-and-copy'], /^verification failed: pid \d+ \(host pid \d+\) memory pages 0x[0-9a-f]+\+\d+: expected crc32/],
  ];
  it.each(cases)('%s %s: caught, rolled back, the workload runs on once at its source', async (fault, extra, message) => {
    w ??= await runOnLab(env, 'h1', 'memwriter', 'mw', ['16', '10', 'hotset']);
    await armH2(fault);
    const before = await progresses(w);
    const { code, view } = await migrate(w.name, 'h2', extra);
    expect(view, JSON.stringify(view.error)).toMatchObject({ outcome: 'rolledBack', committed: false, verify: true });
    expect(code).toBe(3);
    expect(view.error?.code, `${view.error?.phase}: ${view.error?.message}`).toBe('FERRY_VERIFY_MISMATCH');
    expect(view.error?.message).toMatch(message);
    await expectRunsOnceOn(env, w, 'h1');
    // Its own state carried on where it was: progress beyond what it had, its checks passing.
    const after = await progresses(w);
    expect(after.ok).toBe(true);
    expect(after.progress).toBeGreaterThan(before.progress);
  }, SLOW);

  it('unarmed: the migration passes verification and reports what it compared', async () => {
    w ??= await runOnLab(env, 'h1', 'memwriter', 'mw', ['16', '10', 'hotset']);
    await armH2(null);
    const { code, view } = await migrate(w.name, 'h2');
    expect(view.outcome, JSON.stringify(view.error)).toBe('completed');
    expect(code).toBe(0);
    const v = view.verification!;
    expect(v.mismatches).toEqual([]);
    expect(v.processes).toBeGreaterThan(0);
    expect(v.checked.status).toEqual(expect.arrayContaining(['SigIgn', 'SigCgt', 'SigBlk', 'Uid', 'CapEff', 'NoNewPrivs', 'Seccomp', 'personality', 'rlimits']));
    expect(v.checked.mappings).toEqual(['range', 'perms', 'backing']);
    expect(v.checked.fds).toEqual(expect.arrayContaining(['numbers', 'type', 'flags']));
    expect(v.checked.memory).toEqual(expect.arrayContaining(['pages as they landed (read back after writing)']));
    expect(v.pagesChecked.precopy).toBeGreaterThan(0);
    expect(v.notVerified.map((n) => n.what)).toEqual(expect.arrayContaining(['fds: locks (POSIX, OFD, leases)']));
    await expectRunsOnceOn(env, w, 'h2');
    const back = await migrate(w.name, 'h1', ['--no-verify']);
    expect(back.view).toMatchObject({ outcome: 'completed', verify: false, verification: null });
    await expectRunsOnceOn(env, w, 'h1');
    expect(status(w)!.ok).toBe(true);
  }, SLOW);
});
