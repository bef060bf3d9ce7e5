// Multi-threaded processes: TIDs, AVX state, rseq, robust list, clear-tid, sigmask and
// sigaltstack must survive; the workloads check all of that themselves and report it.
import { readdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpoint } from '../../agent/engine/checkpoint.ts';
import { readImage } from '../../agent/engine/image/image-io.ts';
import { restore } from '../../agent/engine/restore.ts';
import { type WorkloadName, readStatus, startWorkload, stopAllWorkloads, waitForProgress, workloadSupported } from '../workloads/harness.ts';
import { adopt, cleanup, sealInheritedFds, tempDir, waitFor, waitGone } from './engine-fixtures/helpers.ts';

beforeAll(() => sealInheritedFds());
afterEach(async () => {
  cleanup();
  await stopAllWorkloads();
});
afterAll(() => cleanup());

const tasksOf = (pid: number) =>
  readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .sort((a, b) => a - b);

/** One checkpoint/kill/restore cycle; returns the image's thread count. */
async function cycle(pid: number): Promise<number> {
  const images = tempDir('img');
  const r = checkpoint(pid, { imagesDir: images });
  await waitGone(pid);
  const rr = restore(images);
  adopt(rr.pid);
  expect(rr.pid).toBe(pid);
  expect(rr.threads).toBe(r.threads);
  return readImage(images).processes[0]!.threads.length;
}

describe('engine: multi-threaded workloads', () => {
  it.skipIf(!workloadSupported('threads-avx'))('threads-avx survives 20 consecutive checkpoint/restore cycles with the same TIDs', { timeout: 240_000 }, async () => {
    const w = await startWorkload('threads-avx');
    let st = await waitForProgress(w, { beyond: 2, timeoutMs: 20_000 });
    st = await waitFor('worker tids', () => {
      const s = readStatus(w);
      return (s.threads as { tid: number }[]).every((t) => t.tid > 0) ? s : undefined;
    });
    const workerTids = (st.threads as { tid: number }[]).map((t) => t.tid);
    expect(workerTids).toHaveLength(4);
    for (let i = 0; i < 20; i++) {
      // Helper threads come and go every 200 ms; the workers and the leader must always be there.
      const before = tasksOf(w.pid);
      for (const t of [w.pid, ...workerTids]) expect(before).toContain(t);
      const n = await cycle(w.pid);
      expect(n).toBe(before.length);
      st = await waitForProgress(w, { timeoutMs: 15_000 });
      expect(st.ok).toBe(true);
      expect((st.threads as { tid: number }[]).map((t) => t.tid)).toEqual(workerTids);
      for (const t of workerTids) expect(tasksOf(w.pid)).toContain(t);
    }
    // Still making progress after the last cycle: token hand-offs and helper joins continue.
    const last = readStatus(w);
    const later = await waitFor('helper threads joined after the last restore', () => {
      const s = readStatus(w);
      expect(s.ok).toBe(true);
      return Number(s.helpers_joined) >= Number(last.helpers_joined) + 4 ? s : undefined;
    });
    expect(Number(later.token_seq)).toBeGreaterThan(Number(last.token_seq));
  });

  for (const name of ['openmp', 'python-threads', 'sqlite'] as WorkloadName[]) {
    it.skipIf(!workloadSupported(name))(`${name}: checkpoint, kill, restore; own checks pass and progress continues`, { timeout: 120_000 }, async () => {
      const w = await startWorkload(name);
      await waitForProgress(w, { beyond: 3, timeoutMs: 20_000 });
      for (let i = 0; i < 2; i++) {
        await cycle(w.pid);
        const frozen = readStatus(w).progress;
        const st = await waitForProgress(w, { beyond: frozen + 3, timeoutMs: 15_000 });
        expect(st.ok).toBe(true);
      }
    });
  }
});
