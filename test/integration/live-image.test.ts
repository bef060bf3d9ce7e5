// Incremental checkpoints (agent/jobs/live-image.ts) against real workloads: the tracker kept on
// the tree between checkpoints, each writing only what changed, the store moved to a new one
// midway (rebase); the last checkpoint ends the workload, and the restored tree's own checks
// (every page memwriter verifies; dirtier's moving, remapped and forked mappings) must pass while
// it carries on.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../agent/engine/checkpoint.ts';
import { writeImage } from '../../agent/engine/image/image-io.ts';
import { PageStore } from '../../agent/engine/memory/page-store.ts';
import { restore } from '../../agent/engine/restore.ts';
import { LiveImage } from '../../agent/jobs/live-image.ts';
import { storeName } from '../../shared/image-format.ts';
import { readStatus, startWorkload, stopAllWorkloads, waitForProgress } from '../workloads/harness.ts';
import { adopt, cleanup, sealInheritedFds, tempDir, waitGone } from './engine-fixtures/helpers.ts';

beforeAll(() => sealInheritedFds());
afterEach(async () => {
  cleanup();
  await stopAllWorkloads();
});

const store = (images: string, gen: number) => new PageStore(join(images, storeName(gen)), storeName(gen));

describe('incremental checkpoints of a running tree', () => {
  for (const [name, args] of [
    ['memwriter', ['32', '40', 'random']],
    ['dirtier', ['8', 'threads,churn,fork']],
  ] as const)
    it(`${name}: three checkpoints, the store moved after the first, restore a tree whose own checks pass`, async () => {
      const w = await startWorkload(name, { args: [...args] });
      await waitForProgress(w, { beyond: 0, timeoutMs: 20_000 });
      const images = tempDir('live');
      const live = LiveImage.start(w.pid, images, store(images, 1));
      const written: number[] = [];
      let snap = '';
      try {
        for (let i = 0; i < 3; i++) {
          if (i === 1) live.rebase(store(images, 2));
          const before = live.store.totalBytes;
          await live.round();
          await waitForProgress(w);
          snap = join(images, `ckpt-00000${i + 1}`);
          mkdirSync(snap);
          const c = Checkpoint.begin(w.pid);
          c.collect();
          const last = await live.final(c, snap);
          if (i < 2) c.release();
          last.finish();
          writeImage(snap, c.image());
          written.push(live.store.totalBytes - before);
          if (i === 2) c.kill();
          else await waitForProgress(w);
        }
      } finally {
        live.stop();
      }
      await waitGone(w.pid);
      // The second store holds everything the last image needs; the first is not referred to.
      const r = restore(snap);
      adopt(r.pid);
      expect(r.pid).toBe(w.pid);
      const at = readStatus(w).progress;
      const after = await waitForProgress(w, { beyond: at, timeoutMs: 20_000 });
      expect(after.ok).toBe(true);
      if (name === 'memwriter') {
        // 40 MB/s for about a second between checkpoints: far less than the 32 MiB the first wrote.
        expect(written[2]!).toBeLessThan(written[0]! / 2);
        // Until it has swept every page at least once more since it came back.
        const sweeps = Number((after as unknown as { sweeps: number }).sweeps);
        for (let st = after; Number((st as unknown as { sweeps: number }).sweeps) < sweeps + 2; ) st = await waitForProgress(w, { beyond: st.progress, timeoutMs: 20_000 });
        expect(readStatus(w).ok).toBe(true);
      }
    });
});
