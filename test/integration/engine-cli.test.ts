// The engine through the `ferry` command: checkpoint, image inspect, restore (--json and human),
// and the exit codes of refusals.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { adopt, alive, buildFixture, cleanup, lastTick, sealInheritedFds, startWorkload, tempDir, waitGone, waitTick } from './engine-fixtures/helpers.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ferry = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin', 'ferry.js'), ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });

let counter = '';
beforeAll(() => {
  sealInheritedFds();
  counter = buildFixture('counter');
});
afterEach(() => cleanup());

describe('ferry checkpoint / restore / image inspect', () => {
  it('round-trips a workload through the CLI; the restored process is not a child of the CLI', async () => {
    const w = startWorkload([counter, 'x', '{dir}/data.bin']);
    await waitTick(w, 50);
    const images = join(tempDir('img'), 'img');
    const ck = ferry('checkpoint', String(w.pid), '--images', images, '--json');
    expect(ck.status, ck.stdout + ck.stderr).toBe(0);
    const ckj = JSON.parse(ck.stdout);
    expect(ckj).toMatchObject({ pid: w.pid, processes: 1, threads: 1, leftRunning: false });
    await waitGone(w.pid);
    const at = lastTick(w);

    const insp = ferry('image', 'inspect', images, '--json');
    expect(insp.status, insp.stderr).toBe(0);
    const ij = JSON.parse(insp.stdout);
    expect(ij.checksums).toBe('ok');
    expect(ij.processes[0]).toMatchObject({ pid: w.pid, comm: 'counter', threads: [w.pid] });
    expect(ferry('image', 'inspect', images).stdout).toContain(`pid ${w.pid} (counter)`);

    const rs = ferry('restore', '--images', images, '--json');
    expect(rs.status, rs.stdout + rs.stderr).toBe(0);
    adopt(w.pid);
    expect(JSON.parse(rs.stdout).pid).toBe(w.pid);
    await waitTick(w, at + 100);
    // Its parent is not the (exited) CLI: it was re-parented like any daemon.
    const ppid = Number(readFileSync(`/proc/${w.pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
    expect(ppid).not.toBe(rs.pid);
    expect(alive(ppid)).toBe(true);
  });

  it('--leave-running keeps the original; human restore output is the pid; refusals exit 2 with a clear error', async () => {
    const w = startWorkload([counter, 'x', '{dir}/data.bin']);
    await waitTick(w, 20);
    const images = join(tempDir('img'), 'img');
    const ck = ferry('checkpoint', String(w.pid), '--images', images, '--leave-running');
    expect(ck.status, ck.stderr).toBe(0);
    expect(ck.stdout).toContain('keeps running');
    const t = lastTick(w);
    await waitTick(w, t + 50);
    // Restoring while the original holds the pid is refused.
    const busy = ferry('restore', '--images', images, '--json');
    expect(busy.status).toBe(1);
    expect(JSON.parse(busy.stdout).error.code).toBe('FERRY_CONFLICT');
    process.kill(w.pid, 'SIGKILL');
    await waitGone(w.pid);
    const rs = ferry('restore', '--images', images);
    expect(rs.status, rs.stderr).toBe(0);
    adopt(w.pid);
    expect(rs.stdout.trim()).toBe(String(w.pid));

    const gone = ferry('checkpoint', '999999', '--images', join(tempDir('img'), 'x'), '--json');
    expect(gone.status).toBe(2);
    expect(JSON.parse(gone.stdout).error.code).toBe('FERRY_NOT_FOUND');
    const none = ferry('image', 'inspect', tempDir('empty'));
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('no image here');
  });
});
