// docs/operators.md's runnable steps and the units the package installs, checked without
// running anything (test/integration/operators-guide.test.ts runs them).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { guideSteps, parseServiceUnit, splitAtSystemctl } from '../integration/helpers/guide-steps.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (rel: string) => readFileSync(path.join(REPO, rel), 'utf8');
const packageList = (name: string) => read(`deploy/packages/${name}.txt`).replace(/#.*/g, '').split(/\s+/).filter(Boolean);

describe("the operators' guide", () => {
  const steps = guideSteps(read('docs/operators.md'));

  it('has runnable steps on m1..m3 only, one install, copies, and the outputs its test checks', () => {
    for (const s of steps) for (const m of s.on) expect(['m1', 'm2', 'm3']).toContain(m);
    expect(steps.filter((s) => s.as === 'install')).toHaveLength(1);
    expect(steps.some((s) => s.as === 'copy')).toBe(true);
    expect(steps.map((s) => s.id).filter(Boolean)).toEqual(['before', 'migrate', 'after']);
  });

  it('starts only units the package or Debian provides', () => {
    const ours = readdirSync(path.join(REPO, 'deploy/systemd')).filter((f) => f.endsWith('.service')).map((f) => f.replace(/\.service$/, ''));
    const started = steps.flatMap((s) => splitAtSystemctl(s.script).flatMap((p) => (p.kind === 'start' ? p.units : [])));
    expect(started.length).toBeGreaterThan(0);
    for (const u of started) expect([...ours, 'nats-server']).toContain(u);
  });

  it('rejects a marker without a block, an unknown attribute, and a systemctl the test cannot carry out', () => {
    expect(() => guideSteps('<!-- guide: on=m1 -->\ntext\n')).toThrow(/followed by/);
    expect(() => guideSteps('<!-- guide: on=m1 sudo -->\n```sh\ntrue\n```\n')).toThrow(/unknown guide attribute/);
    expect(() => guideSteps('<!-- guide: on=m1 -->\n```sh\ntrue\n``` text\n\n```sh\nfalse\n```\n')).toThrow(/a fence inside/);
    expect(() => splitAtSystemctl('systemctl restart ferry-agent\n')).toThrow(/cannot carry out/);
    const [s] = guideSteps('<!-- guide: on=m1,m2 retry until="a +b" until="c" id=x -->\n```sh\necho hi\nsystemctl enable --now ferry-agent\n```\n');
    expect(s).toMatchObject({ on: ['m1', 'm2'], retry: true, id: 'x', as: 'shell' });
    expect(s!.until.map(String)).toEqual(['/a +b/', '/c/']);
    expect(splitAtSystemctl(s!.script)).toEqual([{ kind: 'shell', text: 'echo hi\n' }, { kind: 'start', units: ['ferry-agent'] }]);
  });
});

describe('the packaged systemd units', () => {
  it('run the commands the package installs', () => {
    const wrappers = ['/usr/bin/ferry', '/usr/bin/ferry-agent', '/usr/bin/ferry-coordinator'];
    for (const w of wrappers) expect(read('deploy/package/build-deb.sh')).toContain(w.slice('/usr/bin/'.length) + ':');
    const agent = parseServiceUnit(read('deploy/systemd/ferry-agent.service'), 'ferry-agent.service');
    expect(agent.execStart).toEqual(['/usr/bin/ferry-agent', '--config', '/etc/ferry/agent.json']);
    expect(agent.user).toBeNull();
    const coordinator = parseServiceUnit(read('deploy/systemd/ferry-coordinator.service'), 'ferry-coordinator.service');
    expect(coordinator.execStart).toEqual(['/usr/bin/ferry-coordinator', '--config', '/etc/ferry/coordinator.json']);
    expect(coordinator.user).toBe('ferry');
  });
});

describe('Debian package lists', () => {
  it('keep runtime packages and test tools apart', () => {
    const runtime = packageList('runtime');
    const test = packageList('test');
    expect(runtime.filter((p) => test.includes(p))).toEqual([]);
    for (const tool of ['gcc', 'redis-server', 'sqlite3', 'chromium']) expect(test).toContain(tool);
    for (const needed of ['iproute2', 'nftables', 'util-linux', 'libxxhash0', 'nats-server']) expect(runtime).toContain(needed);
  });
});
