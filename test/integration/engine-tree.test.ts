// Process trees: every process restored with its pid under its own parent, process groups and
// sessions as they were, and pipes between them carrying the bytes that were in flight.
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpoint, preflightTree } from '../../agent/engine/checkpoint.ts';
import { readImage } from '../../agent/engine/image/image-io.ts';
import { restore } from '../../agent/engine/restore.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { parentPid, readRoleStatus, readStatus, startWorkload, stopAllWorkloads, waitForProgress, workloadPids } from '../workloads/harness.ts';
import { adopt, alive, buildFixture, cleanup, waitFdTarget, expectFerryError, lastTick, sealInheritedFds, startWorkload as startFixture, tempDir, waitFor, waitGone, waitTick } from './engine-fixtures/helpers.ts';

const startPlain = (argv: string[]): number => startFixture(argv).pid;

beforeAll(() => sealInheritedFds());
afterEach(async () => {
  cleanup();
  await stopAllWorkloads();
});

describe('engine: process trees', () => {
  it('tree-pipes: 4 processes, pipes with data in flight, pgid/sid, restored twice', { timeout: 120_000 }, async () => {
    const w = await startWorkload('tree-pipes');
    await waitForProgress(w, { beyond: 20, timeoutMs: 20_000 });
    const roles = ['c1', 'gc', 'c2'] as const;
    const ids = () => Object.fromEntries(roles.map((r) => [r, readRoleStatus(w, r)])) as unknown as Record<(typeof roles)[number], { pid: number; ppid: number; pgid: number; sid: number }>;
    const before = ids();
    const pids = workloadPids(w).sort((a, b) => a - b);
    expect(pids).toHaveLength(4);
    for (let i = 0; i < 2; i++) {
      const images = tempDir('img');
      const r = checkpoint(w.pid, { imagesDir: images });
      expect(r.processes).toBe(4);
      const img = readImage(images);
      // Something was in flight in at least one pipe at the checkpoint (readers are slow on purpose).
      expect(img.shared.some((s) => s.kind === 'pipe' && s.data.length > 0)).toBe(true);
      for (const p of pids) await waitGone(p);
      const rr = restore(images);
      for (const p of pids) adopt(p);
      expect(rr.pid).toBe(w.pid);
      expect(rr.processes).toBe(4);
      const frozen = readStatus(w).progress;
      const st = await waitForProgress(w, { beyond: frozen + 50, timeoutMs: 20_000 });
      expect(st.ok).toBe(true);
      expect(workloadPids(w).sort((a, b) => a - b)).toEqual(pids);
      const now = ids();
      for (const role of roles) {
        expect(now[role].pid).toBe(before[role].pid);
        expect(parentPid(now[role].pid)).toBe(before[role].ppid);
        expect(now[role].pgid).toBe(before[role].pgid);
        expect(now[role].sid).toBe(before[role].sid);
      }
      // Children report through the root: their own progress keeps moving too.
      const cp = st.children_progress as Record<string, number>;
      await waitFor('every child to make progress', () => {
        const s = readStatus(w);
        expect(s.ok).toBe(true);
        const cp2 = s.children_progress as Record<string, number>;
        return roles.every((role) => cp2[role]! > cp[role]!);
      }, 20_000);
    }
  });

  it('shm: shared anonymous memory and a memfd between parent and child stay shared', { timeout: 120_000 }, async () => {
    const w = await startWorkload('shm');
    await waitForProgress(w, { beyond: 20, timeoutMs: 20_000 });
    const pids = workloadPids(w).sort((a, b) => a - b);
    expect(pids).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      const images = tempDir('img');
      checkpoint(w.pid, { imagesDir: images });
      const img = readImage(images);
      expect(img.shared.filter((s) => s.kind === 'memfd')).toHaveLength(2);
      for (const p of pids) await waitGone(p);
      restore(images);
      for (const p of pids) adopt(p);
      const before = readStatus(w);
      // The child writes, the parent verifies consistent snapshots: both counters must move on.
      const st = await waitFor('shared counters to move', () => {
        const s = readStatus(w);
        expect(s.ok).toBe(true);
        return Number(s.anon_counter) > Number(before.anon_counter) && Number(s.memfd_counter) > Number(before.memfd_counter) ? s : undefined;
      }, 20_000);
      expect(Number(st.snapshots_verified)).toBeGreaterThan(Number(before.snapshots_verified));
      expect(readRoleStatus(w, 'child').ok).toBe(true);
    }
  });

  it('event-loop: eventfd, timerfd, signalfd with a pending signal, epoll registrations and a socketpair with queued data', { timeout: 120_000 }, async () => {
    const w = await startWorkload('event-loop');
    await waitForProgress(w, { beyond: 10, timeoutMs: 20_000 });
    for (let i = 0; i < 3; i++) {
      const images = tempDir('img');
      checkpoint(w.pid, { imagesDir: images });
      const img = readImage(images);
      const kinds = new Set(img.processes[0]!.fds.map((f) => f.kind));
      for (const k of ['eventfd', 'timerfd', 'signalfd', 'epoll', 'unix']) expect(kinds).toContain(k);
      expect(img.processes[0]!.fds.find((f) => f.kind === 'epoll')!.epoll!.length).toBe(4);
      await waitGone(w.pid);
      restore(images);
      adopt(w.pid);
      const before = readStatus(w);
      // The workload checks every counter, the timer interval, each signal's sender and value and the
      // stream's continuity itself; here it must also keep moving on every channel.
      await waitFor('every channel to move', () => {
        const s = readStatus(w);
        expect(s.ok).toBe(true);
        return (['eventfd_reads', 'timer_expirations', 'signals_received', 'sock_bytes_read'] as const).every((k) => Number(s[k]) > Number(before[k]));
      }, 20_000);
    }
  });

  it('a named pipe between parent and child keeps its unread bytes', { timeout: 60_000 }, async () => {
    const bin = buildFixture('fifo');
    const w = startFixture([bin, '{dir}/ch.fifo']);
    await waitTick(w, 40);
    const kids = () => readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const child = kids()[0]!;
    for (let i = 0; i < 2; i++) {
      const images = tempDir('img');
      checkpoint(w.pid, { imagesDir: images });
      const fifo = readImage(images).shared.find((s) => s.kind === 'fifo');
      expect(fifo).toBeDefined();
      expect(Buffer.from(fifo!.kind === 'fifo' ? fifo!.data : '', 'base64').length).toBeGreaterThan(0);
      await waitGone(w.pid);
      await waitGone(child);
      const at = lastTick(w);
      restore(images);
      adopt(w.pid);
      adopt(child);
      await waitTick(w, at + 60);
      expect(kids()).toEqual([child]);
    }
  });

  it('preflight of a workload that opens and closes files all the time passes (fds closed under the look are skipped)', async () => {
    // Several threads so that fds come and go while preflight walks /proc/PID/fd.
    const w = startPlain(['python3', '-c', "import threading\ndef churn():\n  while True: open('/dev/null').close()\nfor _ in range(3): threading.Thread(target=churn).start()"]);
    await waitFor('4 threads', () => readdirSync(`/proc/${w}/task`).length === 4);
    for (let i = 0; i < 300; i++) expect(preflightTree(w).pids).toEqual([w]);
    expect(alive(w)).toBe(true);
  });

  it('refuses an inotify fd in the preflight, naming pid, fd and kind, and leaves the workload running', async () => {
    const w = startPlain(['python3', '-c', 'import ctypes,time\nctypes.CDLL(None).inotify_init()\nwhile True: time.sleep(0.01)']);
    await waitFdTarget(w, /inotify/);
    const err = await expectFerryError(() => checkpoint(w, { imagesDir: tempDir('img') }), ErrorCode.Unsupported);
    expect(err.message).toMatch(new RegExp(`pid ${w} fd \\d+: inotify`));
    expect(alive(w)).toBe(true);
    expect(readFileSync(`/proc/${w}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
  });

  it('refuses an eventfd shared by parent and child, naming both, and leaves both running', async () => {
    const w = startPlain(['python3', '-c', 'import os,time\ne=os.eventfd(0)\nos.fork()\nwhile True: time.sleep(0.01)']);
    await waitFdTarget(w, /eventfd/);
    const child = await waitFor('the forked child', () => Number(readFileSync(`/proc/${w}/task/${w}/children`, 'utf8').trim()) || undefined);
    await waitFdTarget(child, /eventfd/);
    expect(child).toBeGreaterThan(0);
    const err = await expectFerryError(() => checkpoint(w, { imagesDir: tempDir('img') }), ErrorCode.Unsupported);
    expect(err.message).toMatch(new RegExp(`pid ${child} fd \\d+: eventfd is not supported \\(shared with pid ${w} fd \\d+`));
    for (const p of [w, child]) {
      expect(alive(p)).toBe(true);
      expect(readFileSync(`/proc/${p}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
    }
    adopt(child);
  });
});
