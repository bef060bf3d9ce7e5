// Single-threaded processes: checkpoint, kill, restore with the same pid; the workload's own
// checks must keep passing and it must keep making progress from where it stopped.
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { getPriority, setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpoint } from '../../agent/engine/checkpoint.ts';
import { readImage } from '../../agent/engine/image/image-io.ts';
import { restore } from '../../agent/engine/restore.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { readStatus, startWorkload as startHarnessWorkload, stopAllWorkloads, waitForProgress } from '../workloads/harness.ts';
import { adopt, alive, buildFixture, waitFdTarget, cleanup, expectFerryError, lastTick, logLines, procState, sealInheritedFds, startWorkload, tempDir, waitFor, waitGone, waitTick } from './engine-fixtures/helpers.ts';

let counter = '';
beforeAll(() => {
  sealInheritedFds();
  counter = buildFixture('counter');
});
afterEach(async () => {
  cleanup();
  await stopAllWorkloads();
});

const vdsoOf = (pid: number) => readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').find((l) => l.endsWith('[vdso]'))?.split(' ')[0];

/** Launchers and husks are `sleep 1000000`; a failed restore must leave none of them. */
// Husk launchers inherit this process's environment: the tag tells ours from those of other
// suites restoring on the same machine at the same time.
const HUSK_TAG = `FERRY_TEST_HUSK_TAG=${process.pid}-${Date.now()}`;
process.env.FERRY_TEST_HUSK_TAG = HUSK_TAG.split('=')[1];
const husksLeft = () =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8') === 'sleep\u00001000000\u0000' && readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(HUSK_TAG);
      } catch {
        return false;
      }
    });


describe('engine: single-threaded checkpoint/restore', () => {
  it('restores the counter workload with the same pid and it carries on from its checkpoint', async () => {
    const w = startWorkload([counter, 'x', '{dir}/data.bin']);
    const before = await waitTick(w, 100);
    const vdso = vdsoOf(w.pid);
    const images = tempDir('img');
    const r = checkpoint(w.pid, { imagesDir: images });
    expect(r.threads).toBe(1);
    expect(r.pagesBytes).toBeGreaterThan(1 << 20);
    await waitGone(w.pid);
    const atCheckpoint = lastTick(w);
    expect(atCheckpoint).toBeGreaterThanOrEqual(before);

    const rr = restore(images);
    adopt(rr.pid);
    expect(rr.pid).toBe(w.pid);
    // Progress from where it stopped (not from 0), with every self-check passing along the way.
    const after = await waitTick(w, atCheckpoint + 200);
    expect(after).toBeGreaterThan(atCheckpoint + 200);
    const ticks = logLines(w)
      .map((l) => /^tick (\d+)/.exec(l)?.[1])
      .filter(Boolean)
      .map(Number);
    expect(ticks).toEqual([...ticks].sort((a, b) => a - b));
    expect(new Set(ticks).size).toBe(ticks.length);
    expect(vdsoOf(w.pid)).toBe(vdso);
    expect(readFileSync(`/proc/${w.pid}/comm`, 'utf8').trim()).toBe('counter');
    expect(readlinkSync(`/proc/${w.pid}/exe`)).toBe(counter);
    // The data file was written through the restored fd at the right offset: one line per tick, no gap.
    const data = readFileSync(join(w.dir, 'data.bin'), 'utf8').trim().split('\n').map(Number);
    expect(data.every((v, i) => v === i + 1)).toBe(true);
  });

  it('with leaveRunning the original keeps running and the image still restores', async () => {
    const w = startWorkload([counter, 'x', '{dir}/data.bin']);
    await waitTick(w, 50);
    const images = tempDir('img');
    checkpoint(w.pid, { imagesDir: images, leaveRunning: true });
    const t = lastTick(w);
    await waitTick(w, t + 100);
    expect(readFileSync(`/proc/${w.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
    expect(readFileSync(`/proc/${w.pid}/cgroup`, 'utf8')).not.toMatch(/ferry-ckpt/);
    process.kill(w.pid, 'SIGKILL');
    await waitGone(w.pid);
    const killedAt = lastTick(w);
    const linesBefore = logLines(w).length;
    const rr = restore(images);
    adopt(rr.pid);
    expect(rr.pid).toBe(w.pid);
    // The restored copy rewinds to the checkpoint (its ticks restart below where the original
    // was killed) and then runs past it, every self-check passing.
    await waitTick(w, killedAt + 100);
    const fresh = logLines(w)
      .slice(linesBefore)
      .map((l) => Number(/^tick (\d+)/.exec(l)?.[1]));
    expect(fresh[0]).toBeLessThanOrEqual(killedAt);
    expect(fresh[0]).toBeGreaterThanOrEqual(t - 50);
    expect(fresh).toEqual([...fresh].sort((a, b) => a - b));
  });

  it('restores the harness "files" workload (pwrite slots, O_APPEND log, reader offsets, O_CLOEXEC)', async () => {
    const w = await startHarnessWorkload('files');
    const st = await waitForProgress(w, { beyond: 200, timeoutMs: 15_000 });
    const images = tempDir('img');
    checkpoint(w.pid, { imagesDir: images });
    await waitGone(w.pid);
    const frozen = readStatus(w).progress;
    const rr = restore(images);
    adopt(rr.pid);
    expect(rr.pid).toBe(w.pid);
    const later = await waitForProgress(w, { beyond: frozen + 500, timeoutMs: 15_000 });
    expect(later.ok).toBe(true);
    expect(Number(later.full_checks)).toBeGreaterThan(Number(st.full_checks));
  });
});

describe('engine: credentials', () => {
  it('uids, gids, groups, capability sets and no_new_privs come back exactly', { timeout: 60_000 }, async () => {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'engine-fixtures', 'creds.py');
    const w = startWorkload([
      'setpriv', '--reuid', '1234', '--regid', '2345', '--groups', '3456,4567', '--inh-caps', '-all', '--bounding-set', '-all,+net_bind_service,+kill', '--no-new-privs',
      '/usr/bin/python3', script,
    ]);
    await waitTick(w, 20);
    const images = tempDir('img');
    checkpoint(w.pid, { imagesDir: images });
    const creds = readImage(images).processes[0]!.creds;
    expect(creds).toMatchObject({ uids: [1234, 1234, 1234, 1234], gids: [2345, 2345, 2345, 2345], groups: [3456, 4567], noNewPrivs: true });
    await waitGone(w.pid);
    const at = lastTick(w);
    restore(images);
    adopt(w.pid);
    await waitTick(w, at + 30);
    const status = readFileSync(`/proc/${w.pid}/status`, 'utf8');
    expect(status).toMatch(/Uid:\s+1234\s+1234\s+1234\s+1234/);
    expect(status).toMatch(/NoNewPrivs:\s+1/);
    expect(status).toContain(`CapBnd:\t${BigInt(creds.capBnd).toString(16).padStart(16, '0')}`);
  });
});

describe('engine: scheduling', () => {
  // Husks are forked by the restoring process, which may run at another priority (the agent's
  // unit raises its own): the image's nice value and policy must win over what the husk inherited.
  it('nice value and policy come back, whatever the restoring process runs at', { timeout: 60_000 }, async () => {
    const w = startWorkload(['chrt', '--batch', '0', 'nice', '-n', '7', counter, 'x', '{dir}/data.bin']);
    await waitTick(w, 20);
    const sched = (pid: number) => {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return { nice: Number(f[16]), policy: Number(f[38]) };
    };
    expect(sched(w.pid)).toEqual({ nice: 7, policy: 3 });
    const images = tempDir('img');
    checkpoint(w.pid, { imagesDir: images });
    expect(readImage(images).processes[0]!.threads[0]!.sched).toEqual({ nice: 7, policy: 3, rtPriority: 0 });
    await waitGone(w.pid);
    const at = lastTick(w);
    const own = getPriority(0);
    setPriority(0, -5);
    let report;
    try {
      report = restore(images, { verify: true }).verify;
    } finally {
      setPriority(0, own);
    }
    adopt(w.pid);
    expect(report?.mismatches).toEqual([]);
    expect(report?.checked.status).toContain('sched');
    await waitTick(w, at + 30);
    expect(sched(w.pid)).toEqual({ nice: 7, policy: 3 });
  });
});

describe('engine: timers', () => {
  it('clocks: ITIMER_REAL and a POSIX timer (same id, signal and value) keep ticking, clocks do not jump', { timeout: 60_000 }, async () => {
    const w = await startHarnessWorkload('clocks');
    await waitForProgress(w, { beyond: 20, timeoutMs: 15_000 });
    for (let i = 0; i < 2; i++) {
      const images = tempDir('img');
      checkpoint(w.pid, { imagesDir: images });
      const timers = readImage(images).processes[0]!.posixTimers;
      expect(timers).toHaveLength(1);
      expect(readImage(images).processes[0]!.itimers.map((t) => t.which)).toContain(0);
      await waitGone(w.pid);
      const rr = restore(images);
      adopt(rr.pid);
      expect(readFileSync(`/proc/${w.pid}/timers`, 'utf8')).toContain(`ID: ${timers[0]!.id}`);
      const before = readStatus(w);
      await waitFor('both timers to tick after the restore', () => {
        const s = readStatus(w);
        expect(s.ok).toBe(true);
        return Number(s.itimer_ticks) > Number(before.itimer_ticks) + 2 && Number(s.posix_timer_ticks) > Number(before.posix_timer_ticks) + 10;
      });
    }
  });
});

describe('engine: failure paths', () => {
  it('preflight refuses an unsupported fd before freezing and leaves the workload untouched', async () => {
    // A netlink socket: sockets the engine carries are TCP, UDP and unix (see engine-sockets).
    const w = startWorkload(['python3', '-c', "import socket,time\ns=socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\nwhile True: time.sleep(0.01)"]);
    await waitFdTarget(w.pid, /^socket:/);
    const images = tempDir('img');
    const err = await expectFerryError(() => checkpoint(w.pid, { imagesDir: images }), ErrorCode.Unsupported);
    expect(err.message).toContain(`pid ${w.pid}`);
    expect(err.message).toMatch(/fd \d+: netlink socket is not supported/);
    expect(err.details).toMatchObject({ pid: w.pid, kind: 'netlink socket' });
    expect(readFileSync(`/proc/${w.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
    expect(['S', 'R']).toContain(procState(w.pid));
    expect(readFileSync(`/proc/${w.pid}/cgroup`, 'utf8')).not.toMatch(/ferry-ckpt/);
  });

  it('refuses an image from a mismatching machine, and a corrupted one, leaving nothing behind', async () => {
    const w = startWorkload([counter, 'x', '{dir}/data.bin']);
    await waitTick(w, 10);
    const images = tempDir('img');
    checkpoint(w.pid, { imagesDir: images });
    await waitGone(w.pid);
    const jsonPath = join(images, 'image.json');
    const good = readFileSync(jsonPath, 'utf8');
    // Values unlike this machine's own, whatever its CPU (XCR0 0x7 with an 832-byte XSAVE area is a real machine too).
    const here = (JSON.parse(good) as { machine: { xcr0: string; xstateSize: number } }).machine;
    for (const [field, value, word] of [
      ['kernelRelease', '5.10.0-other', 'kernel release'],
      ['xcr0', `0x${(BigInt(here.xcr0) ^ 0x4n).toString(16)}`, 'XCR0'],
      ['xstateSize', here.xstateSize + 64, 'XSAVE size'],
    ] as const) {
      const img = JSON.parse(good);
      img.machine[field] = value;
      writeFileSync(jsonPath, JSON.stringify(img));
      const err = await expectFerryError(() => restore(images), ErrorCode.Incompatible);
      expect(err.message).toContain(word);
      expect(alive(w.pid)).toBe(false);
    }
    const img = JSON.parse(good);
    img.machine.vdsoLayout[0].size += 4096;
    writeFileSync(jsonPath, JSON.stringify(img));
    expect((await expectFerryError(() => restore(images), ErrorCode.Incompatible)).message).toContain('vDSO');
    writeFileSync(jsonPath, good);
    // Flip one byte of page data: the checksum catches it and the half-built husk is gone.
    const pages = join(images, readImage(images).processes[0]!.pagesFile);
    const buf = readFileSync(pages);
    buf[buf.length - 100] = buf[buf.length - 100]! ^ 0xff;
    writeFileSync(pages, buf);
    const err = await expectFerryError(() => restore(images), ErrorCode.BadImage);
    expect(err.message).toContain('checksum');
    expect(alive(w.pid)).toBe(false);
    expect(husksLeft()).toEqual([]);
  });
});
