// The conformance programs through a live migration (`npm run conformance -- --migrate`): each
// runs as a workload on lab host h1 (`ferry run`, a container of its own), is moved to h2 with
// `ferry migrate`, and then checks itself. A migration rolled back at preflight, with the
// program still running untouched, is the `refused` row; any other failure is `wrong`.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationView } from '../../shared/migration.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry } from '../integration/helpers/cli.ts';
import { type Row, type RunOptions, buildProgram, killProgram, logTail, programPids, readResult, runAll, verdict, waitFile } from './runner.ts';

const lab = { FERRY_LAB: `cfmig${process.env.FERRY_TEST_LAB_SUFFIX ?? ''}` };

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const r = await ferry(args, lab);
  return { code: r.code, out: r.stdout || r.stderr };
}

async function cliJson<T>(args: string[]): Promise<T> {
  const r = await cli(args);
  if (r.code !== 0 && !r.out.trim().startsWith('{')) throw new Error(`ferry ${args.join(' ')} exited ${r.code}: ${r.out}`);
  return JSON.parse(r.out) as T;
}

/** One program: run on h1, migrate to h2, verdict; the workload is stopped and forgotten afterwards. */
export async function migrateFeature(feature: string, opts: RunOptions = {}): Promise<Row> {
  const t0 = performance.now();
  const row = (outcome: Row['outcome'], message: string): Row => ({ feature, outcome, message, ms: Math.round(performance.now() - t0) });
  const bin = await buildProgram(feature);
  const dir = mkdtempSync(join(tmpdir(), `ferry-cfm-${feature}-`));
  chmodSync(dir, 0o777);
  const name = `cf-${feature}`;
  try {
    await cliJson<WorkloadInfo>(['run', '--host', 'h1', '--name', name, '--cwd', dir, '--json', '--', bin, dir]);
    const ready = await waitFile(dir, 'ready', null, opts.readyTimeoutMs ?? 15_000);
    if (ready === 'result') {
      const v = verdict(readResult(dir)!);
      return v.outcome === 'skipped' ? row('skipped', v.message) : row('wrong', `before the migration: ${v.message}`);
    }
    if (ready !== 'file') return row('wrong', `program ${ready === 'gone' ? 'died' : 'never got ready'} before the migration${logTail(dir)}`);
    const before = programPids(dir);
    const m = await cliJson<MigrationView>(['migrate', name, '--to', 'h2', '--json']);
    if (m.outcome !== 'completed') {
      const untouched = m.error?.phase === 'preflight' && before.every((pid) => programPids(dir).includes(pid)) && readResult(dir) === null;
      const msg = m.error?.message ?? `outcome ${m.outcome}`;
      return untouched ? row('refused', msg) : row('wrong', `migration ${m.outcome} in ${m.error?.phase ?? '?'}: ${msg}`);
    }
    writeFileSync(join(dir, 'go'), '');
    const done = await waitFile(dir, 'result', null, opts.resultTimeoutMs ?? 10_000);
    if (done === 'file' || done === 'result') return { ...row('wrong', ''), ...verdict(readResult(dir)!) };
    return row('wrong', `migrated program ${done === 'gone' ? 'died' : 'never answered'} after go${logTail(dir)}`);
  } finally {
    await cli(['stop', name]);
    killProgram(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Brings a two-host lab up, moves every program one at a time, takes the lab down. */
export async function migrateAll(features: readonly string[], opts: RunOptions = {}): Promise<Row[]> {
  await cli(['lab', 'down']);
  const up = await cli(['lab', 'up', '--hosts', '2', '--json']);
  if (up.code !== 0) throw new Error(`ferry lab up failed: ${up.out}`);
  try {
    return await runAll(features, { ...opts, parallel: 1 }, migrateFeature);
  } finally {
    await cli(['lab', 'down']);
  }
}
