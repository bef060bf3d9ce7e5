// Images directories of workload checkpoints (agent/jobs/image-store.ts): at every point of a
// write, including a crash halfway, `current` names a complete snapshot; the link is read as
// untrusted. And the small parts of `ferry launch`: its exit-status wrapper and its options.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { beginSnapshot, currentSnapshot, nextStore, resolveImageDir, retireSnapshots } from '../../agent/jobs/image-store.ts';
import { PagesFile } from '../../shared/image-format.ts';
import { parseDuration, parseSignal } from '../../cli/commands/jobs.ts';
import { wrapCommand } from '../../cli/run/launch.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-jobimg-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const snapshot = (content: string) => {
  const s = beginSnapshot(dir);
  writeFileSync(path.join(s.dir, 'image.json'), content);
  return s;
};
const currentContent = () => readFileSync(path.join(resolveImageDir(dir), 'image.json'), 'utf8');

describe('images directory', () => {
  it('publishes a snapshot only when complete, and keeps the previous one until then', () => {
    expect(currentSnapshot(dir)).toBeNull();
    snapshot('one').publish();
    expect(currentContent()).toBe('one');
    // A second one half written (a crash before publish): readers still see the first, whole.
    const half = snapshot('two');
    expect(currentContent()).toBe('one');
    expect(currentSnapshot(dir)!.seq).toBe(1);
    void half;
    // The next writer clears the leftover and takes the next number.
    const third = snapshot('three');
    expect(third.seq).toBe(2);
    expect(readdirSync(dir).filter((e) => e.endsWith('.partial'))).toHaveLength(1);
    third.publish();
    expect(currentContent()).toBe('three');
    expect(readdirSync(dir).sort()).toEqual(['ckpt-000002', 'current']);
  });

  it('a crash between the rename and the link swap leaves the older snapshot current; the stray one goes with the next publish', () => {
    snapshot('one').publish();
    mkdirSync(path.join(dir, 'ckpt-000002'));
    writeFileSync(path.join(dir, 'ckpt-000002', 'image.json'), 'stray');
    expect(currentContent()).toBe('one');
    const next = snapshot('three');
    expect(next.seq).toBe(3);
    next.publish();
    expect(readdirSync(dir).sort()).toEqual(['ckpt-000003', 'current']);
  });

  it('refuses a current link that leads out of the directory, or is no link', () => {
    symlinkSync('../../etc', path.join(dir, 'current'));
    expect(() => currentSnapshot(dir)).toThrow(/not at a snapshot/);
    rmSync(path.join(dir, 'current'));
    mkdirSync(path.join(dir, 'current'));
    expect(() => currentSnapshot(dir)).toThrow(/not a symlink/);
  });

  it('a plain image directory is its own snapshot; a workload checkpoint is not written into one', () => {
    writeFileSync(path.join(dir, 'image.json'), '{}');
    expect(resolveImageDir(dir)).toBe(dir);
    expect(() => beginSnapshot(dir)).toThrow(/plain image/);
  });

  it('a pages store stays while the current snapshot refers to it, and goes with the first one that does not', () => {
    const first = nextStore(dir);
    expect(first).toBe('store-000001');
    mkdirSync(path.join(dir, first));
    snapshot('one').publish(first);
    // A store a crashed checkpoint began: never reused, removed by the next publish.
    const crashed = nextStore(dir);
    expect(crashed).toBe('store-000002');
    mkdirSync(path.join(dir, crashed));
    snapshot('two').publish(first);
    expect(readdirSync(dir).sort()).toEqual(['ckpt-000002', 'current', first]);
    snapshot('three').publish();
    expect(readdirSync(dir).sort()).toEqual(['ckpt-000003', 'current']);
    mkdirSync(path.join(dir, nextStore(dir)));
    retireSnapshots(dir);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an image names only its own pages files or a sibling store, never another path', () => {
    for (const ok of ['pages-12.img', '../store-000003/pages-4242.img']) expect(PagesFile.safeParse(ok).success, ok).toBe(true);
    for (const bad of ['../../etc/shadow', '/etc/shadow', '../store-000003/../../x.img', 'store-000003/pages-1.img', '../ckpt-000001/pages-1.img', 'pages-1.img/..'])
      expect(PagesFile.safeParse(bad).success, bad).toBe(false);
  });

  it('retire removes every snapshot: nothing is left to resume from', () => {
    snapshot('one').publish();
    retireSnapshots(dir);
    expect(currentSnapshot(dir)).toBeNull();
    expect(existsSync(dir)).toBe(true);
  });
});

describe('ferry launch parts', () => {
  it("the wrapper records the command's own exit status, and exits with it", () => {
    const file = path.join(dir, 'exit-status');
    const [sh, ...args] = wrapCommand(['sh', '-c', 'exit 42'], file);
    let code = 0;
    try {
      execFileSync(sh!, args, { stdio: 'ignore' });
    } catch (err) {
      code = (err as { status: number }).status;
    }
    expect(code).toBe(42);
    expect(readFileSync(file, 'utf8').trim()).toBe('42');
    execFileSync(sh!, wrapCommand(['true'], file).slice(1));
    expect(readFileSync(file, 'utf8').trim()).toBe('0');
  });

  it('takes signals by name or number, and durations with units', () => {
    expect(parseSignal('USR1')).toBe('SIGUSR1');
    expect(parseSignal('SIGUSR2')).toBe('SIGUSR2');
    expect(parseSignal('10')).toBe('SIGUSR1');
    expect(() => parseSignal('KILL')).toThrow(/cannot catch|not a signal/);
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(() => parseDuration('10ms')).toThrow(/at least 1s/);
    expect(() => parseDuration('soon')).toThrow();
  });
});
