// A container (root = pid 1 of its own pid, mount, uts, ipc and time namespaces) restored on a
// host whose clocks differ from the ones it saw: its CLOCK_MONOTONIC and CLOCK_BOOTTIME must
// not jump, its pids inside the namespace and its hostname stay.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpoint } from '../../agent/engine/checkpoint.ts';
import { readImage } from '../../agent/engine/image/image-io.ts';
import { restore } from '../../agent/engine/restore.ts';
import { type Workload as HarnessWorkload, buildWorkload, readStatus, waitForProgress } from '../workloads/harness.ts';
import { adopt, cleanup, sealInheritedFds, startWorkload, tempDir, waitFor, waitGone } from './engine-fixtures/helpers.ts';

beforeAll(() => sealInheritedFds());
afterEach(() => cleanup());

const offsets = (pid: number) => readFileSync(`/proc/${pid}/timens_offsets`, 'utf8').replace(/\s+/g, ' ').trim();

describe('engine: containers', () => {
  it('clocks in a container whose clocks are 50000/60000 s ahead of this host: no jump, ns pids and hostname kept', { timeout: 120_000 }, async () => {
    const bin = await buildWorkload('clocks');
    // The source "host" of the container: a time namespace far ahead of this host's clocks.
    const shim = startWorkload(['unshare', '--pid', '--fork', '--mount-proc', '--uts', '--ipc', '--time', '--monotonic', '50000', '--boottime', '60000', 'sh', '-c', `hostname ferry-ct; exec ${bin} {dir}/status.json 2`]);
    const root = await waitFor('container init', () => Number(readFileSync(`/proc/${shim.pid}/task/${shim.pid}/children`, 'utf8').trim()) || undefined);
    adopt(root);
    // The jump threshold is 2 s: without time-namespace offsets the clock would step back 50000 s.
    const w: HarnessWorkload = { name: 'clocks', pid: root, statusPath: `${shim.dir}/status.json`, dir: shim.dir };
    await waitForProgress(w, { beyond: 20, timeoutMs: 15_000 });
    expect(readStatus(w).pid).toBe(1);
    for (let i = 0; i < 2; i++) {
      const images = tempDir('img');
      checkpoint(w.pid, { imagesDir: images });
      const img = readImage(images);
      expect(img.container?.hostname).toBe('ferry-ct');
      expect(img.processes[0]!.pid).toBe(1);
      expect(BigInt(img.container!.monotonicNs)).toBeGreaterThan(50_000n * 1_000_000_000n);
      await waitGone(w.pid);
      const rr = restore(images);
      adopt(rr.pid);
      w.pid = rr.pid;
      expect(offsets(rr.pid)).toMatch(/^monotonic 5000[01] 0 boottime 6000[01] 0$/);
      expect(execFileSync('nsenter', ['-t', String(rr.pid), '-u', 'hostname'], { encoding: 'utf8' }).trim()).toBe('ferry-ct');
      const before = readStatus(w);
      const st = await waitFor('clock readings and timer ticks after the restore', () => {
        const s = readStatus(w);
        expect(s.ok).toBe(true);
        return s.progress > before.progress + 50 && Number(s.posix_timer_ticks) > Number(before.posix_timer_ticks) + 10 ? s : undefined;
      });
      expect(st.pid).toBe(1);
      expect(Number(st.max_jump_monotonic_ms)).toBeLessThan(2000);
      expect(Number(st.max_jump_boottime_ms)).toBeLessThan(2000);
    }
  });

  it('tree-pipes as a container: 4 processes keep pids 1-4 inside the namespace, pipes keep their data', { timeout: 120_000 }, async () => {
    const bin = await buildWorkload('tree-pipes');
    const shim = startWorkload(['unshare', '--pid', '--fork', '--mount-proc', bin, '{dir}/status.json']);
    const root = await waitFor('container init', () => Number(readFileSync(`/proc/${shim.pid}/task/${shim.pid}/children`, 'utf8').trim()) || undefined);
    adopt(root);
    const w: HarnessWorkload = { name: 'tree-pipes', pid: root, statusPath: `${shim.dir}/status.json`, dir: shim.dir };
    await waitForProgress(w, { beyond: 20, timeoutMs: 15_000 });
    expect((readStatus(w).pids as number[]).sort()).toEqual([1, 2, 3, 4]);
    for (let i = 0; i < 2; i++) {
      const images = tempDir('img');
      const r = checkpoint(w.pid, { imagesDir: images });
      expect(r.processes).toBe(4);
      expect(readImage(images).processes.map((p) => p.pid).sort()).toEqual([1, 2, 3, 4]);
      await waitGone(w.pid);
      const rr = restore(images);
      adopt(rr.pid);
      w.pid = rr.pid;
      const frozen = readStatus(w).progress;
      const st = await waitForProgress(w, { beyond: frozen + 50, timeoutMs: 20_000 });
      expect((st.pids as number[]).sort()).toEqual([1, 2, 3, 4]);
      // Every process of the restored tree is in the new namespace, under the new init.
      const nspids = readFileSync(`/proc/${rr.pid}/status`, 'utf8').match(/^NSpid:\s*(.*)$/m)![1]!.trim().split(/\s+/);
      expect(nspids).toEqual([String(rr.pid), '1']);
    }
  });

  it('refuses a container holding SysV IPC objects before freezing it', async () => {
    const shim = startWorkload(['unshare', '--pid', '--fork', '--mount-proc', '--ipc', '/usr/bin/python3', '-c', 'import ctypes,time\nctypes.CDLL(None).semget(0, 1, 0o1600)\nwhile True: time.sleep(0.05)']);
    const root = await waitFor('container init', () => Number(readFileSync(`/proc/${shim.pid}/task/${shim.pid}/children`, 'utf8').trim()) || undefined);
    adopt(root);
    await waitFor('semaphore created', () => execFileSync('nsenter', ['-t', String(root), '-i', 'cat', '/proc/sysvipc/sem'], { encoding: 'utf8' }).split('\n').length > 2);
    const images = tempDir('img');
    expect(() => checkpoint(root, { imagesDir: `${images}/x` })).toThrow(/pid \d+ process: SysV IPC objects is not supported/);
    expect(readFileSync(`/proc/${root}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
    expect(readFileSync(`/proc/${root}/stat`, 'utf8')).toMatch(/\) [SR] /);
  });
});
