// A checkpoint whose process dies half way must leave the workload running as before: the
// guardian started with the freeze thaws it, sends SIGCONT and moves it back to its cgroup.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildFixture, cleanup, lastTick, procState, sealInheritedFds, startWorkload, tempDir, waitFor, waitTick } from './engine-fixtures/helpers.ts';

const here = dirname(fileURLToPath(import.meta.url));
let counter = '';
beforeAll(() => {
  sealInheritedFds();
  counter = buildFixture('counter');
});
afterEach(() => cleanup());

async function startHangingCheckpoint(pid: number, stage: string): Promise<{ kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'engine-fixtures', 'ckpt-and-hang.ts'), String(pid), tempDir('img'), stage], {
    cwd: join(here, '..', '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  try {
    await waitFor(`checkpoint to pause at ${stage}`, () => out.includes('paused') || child.exitCode !== null, 20_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  expect(out).toContain(`paused ${stage}`);
  return {
    kill: async () => {
      child.kill('SIGKILL');
      await waitFor('checkpoint process to die', () => child.exitCode !== null || child.signalCode !== null);
    },
  };
}

describe('engine: a checkpoint killed half way', () => {
  for (const stage of ['frozen', 'group-stopped', 'collected']) {
    it(`leaves the workload running when killed at "${stage}"`, async () => {
      const w = startWorkload([counter, 'x', '{dir}/data.bin']);
      await waitTick(w, 20);
      const cgBefore = readFileSync(`/proc/${w.pid}/cgroup`, 'utf8');
      const ck = await startHangingCheckpoint(w.pid, stage);
      // Held still while the checkpointer lives: no progress.
      const held = lastTick(w);
      expect(['t', 'T', 'S', 'D']).toContain(procState(w.pid));
      await new Promise((r) => setTimeout(r, 300));
      expect(lastTick(w)).toBeLessThanOrEqual(held + 50);
      await ck.kill();
      // Runs on within a moment, untraced, unstopped, back in its own cgroup.
      await waitTick(w, held + 100, 10_000);
      expect(readFileSync(`/proc/${w.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
      expect(procState(w.pid)).not.toBe('T');
      await waitFor('cgroup restored', () => readFileSync(`/proc/${w.pid}/cgroup`, 'utf8') === cgBefore);
      await waitFor('freeze cgroup removed', () => !readdirSync('/sys/fs/cgroup/unified').some((d) => d.startsWith(`ferry-ckpt-${w.pid}-`)));
    });
  }
});
