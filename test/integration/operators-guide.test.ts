// docs/operators.md, run: every command block marked for the guide, in order, on three machines
// built of namespaces on this host (test/integration/helpers/guide-machines.ts), from the
// package `npm run package` builds to a live migration of the guide's example workload from m1
// to m2, checked by what the workload itself answers. Where a step cannot run in a namespace
// (installing a package, scp, systemd) the test carries it out itself, as the guide's "How the
// guide is tested" says.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { REPO } from './helpers/cli.ts';
import {
  buildMachines,
  cgroupProcesses,
  copyBetween,
  daemonLogs,
  installUnpacked,
  machinesOf,
  mustShellIn,
  shellIn,
  startUnit,
  stopUnits,
  teardownMachines,
  type Machine,
  type Machines,
} from './helpers/guide-machines.ts';
import { guideSteps, parseServiceUnit, splitAtSystemctl, type GuideStep } from './helpers/guide-steps.ts';
import { labEnv } from './helpers/lab.ts';

const execFileP = promisify(execFile);
const LAB = labEnv('guide').FERRY_LAB;
const NAMES = ['m1', 'm2', 'm3'];
/** The guide's management addresses (docs/operators.md, "The machines"). */
const mgmtAddress = (i: number) => `192.0.2.1${i + 1}`;
const RETRY_MS = 60_000;

let machines: Machines;
let pkgRoot = '';
const outputs = new Map<string, string>();

const machine = (name: string): Machine => {
  const m = machines.list.find((x) => x.name === name);
  if (!m) throw new Error(`the guide names machine ${name}, which the test does not build`);
  return m;
};

/** Builds the package as the guide says, and unpacks it (files and maintainer scripts) for the machines. */
async function buildPackage(dir: string): Promise<{ deb: string; control: string }> {
  const { stdout } = await execFileP('npm', ['run', '--silent', 'package'], { cwd: REPO, maxBuffer: 16 << 20 });
  const deb = /package: (\S+\.deb)/.exec(stdout)?.[1];
  if (!deb) throw new Error(`npm run package printed no package: ${stdout}`);
  pkgRoot = path.join(dir, 'pkg');
  await execFileP('dpkg-deb', ['-x', path.join(REPO, deb), pkgRoot]);
  await execFileP('dpkg-deb', ['-e', path.join(REPO, deb), path.join(pkgRoot, 'DEBIAN')]);
  // Debian 12 has merged /usr: the package's /lib is /usr/lib on the machine.
  await execFileP('cp', ['-a', `${pkgRoot}/lib/.`, `${pkgRoot}/usr/lib/`]);
  return { deb, control: readFileSync(path.join(pkgRoot, 'DEBIAN', 'control'), 'utf8') };
}

/** The substitute for `apt-get install ./ferry_*.deb PKG...`: the dependencies must be on this host already, then the package goes onto the machine. */
async function install(step: GuideStep, control: string): Promise<void> {
  const line = step.script.split('\n').find((l) => l.startsWith('apt-get install '));
  if (!line || !/ \.\/ferry_\S+\.deb/.test(line)) throw new Error(`docs/operators.md:${step.line}: the install step must be \`apt-get install ./ferry_<version>_<arch>.deb ...\``);
  const extra = line.split(/\s+/).slice(2).filter((w) => !w.endsWith('.deb'));
  const depends = /^Depends: (.*)$/m.exec(control)![1]!.split(',').map((d) => d.trim());
  for (const dep of [...depends, ...extra]) {
    const [, name, op, version] = /^([\w.+-]+)(?: \((>=|=) ([^)]+)\))?$/.exec(dep)!;
    const { stdout } = await execFileP('dpkg-query', ['-W', '-f', '${Status} ${Version}', name!]).catch(() => ({ stdout: '' }));
    expect(stdout, `${name} (needed by the install step) is installed on this host`).toMatch(/^install ok installed /);
    if (op) await execFileP('dpkg', ['--compare-versions', stdout.split(' ').pop()!, op === '>=' ? 'ge' : 'eq', version!]);
  }
  for (const name of step.on) await installUnpacked(machine(name), pkgRoot);
}

/** The substitute for scp lines: `scp -p SOURCES mX:DIR`, run on the step's machine. */
async function copy(step: GuideStep): Promise<void> {
  const from = machine(step.on[0]!);
  for (const line of step.script.split('\n').filter((l) => l.trim())) {
    const m = /^scp -p (.+) (m\d):(\S+)$/.exec(line.trim());
    if (!m) throw new Error(`docs/operators.md:${step.line}: a copy step holds only \`scp -p FILES mN:DIR\` lines, not "${line}"`);
    await copyBetween(from, m[1]!, machine(m[2]!), m[3]!);
  }
}

async function startUnits(m: Machine, units: string[]): Promise<void> {
  for (const u of units) {
    const file = `${u.endsWith('.service') ? u : `${u}.service`}`;
    const text = await mustShellIn(m, `cat /etc/systemd/system/${file} 2>/dev/null || cat /lib/systemd/system/${file}`);
    await startUnit(machines, m, u, parseServiceUnit(text, file));
  }
}

/** One machine's run of a shell step: its text up to each systemctl line, which the test carries out. */
async function runShell(step: GuideStep, m: Machine): Promise<string> {
  let stdout = '';
  for (const part of splitAtSystemctl(step.script)) {
    if (part.kind !== 'shell') {
      await (part.kind === 'start' ? startUnits(m, part.units) : stopUnits(machines, m, part.units));
      continue;
    }
    const deadline = Date.now() + RETRY_MS;
    for (;;) {
      const r = await shellIn(m, part.text);
      const unmet = step.until.filter((re) => !re.test(r.stdout));
      if (r.code === 0 && unmet.length === 0) {
        stdout += r.stdout;
        break;
      }
      if (!step.retry || Date.now() > deadline) {
        throw new Error(
          `docs/operators.md:${step.line} on ${m.name}: exit ${r.code}${unmet.length ? `, output lacks ${unmet.join(', ')}` : ''}\n${part.text}--- stdout\n${r.stdout}--- stderr\n${r.stderr}\n${daemonLogs(machines)}`,
        );
      }
      await sleep(500);
    }
  }
  return stdout;
}

/** Counter processes of the guide's workload that run (not stopped), inside the machines' agents' cgroups. */
function runningCounters(): { pid: number; cgroup: string }[] {
  const mine = new Set(cgroupProcesses(NAMES));
  const out: { pid: number; cgroup: string }[] = [];
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!mine.has(pid)) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('counter.py')) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'unshare') continue;
      if ('TtZ'.includes(stat.slice(stat.lastIndexOf(')') + 2)[0]!)) continue;
      out.push({ pid, cgroup: readFileSync(`/proc/${pid}/cgroup`, 'utf8') });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

describe('docs/operators.md, run on three machines', () => {
  const steps = guideSteps(readFileSync(path.join(REPO, 'docs/operators.md'), 'utf8'));
  let control = '';

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), `ferry-${LAB}-`));
    machines = machinesOf(LAB, dir);
    await teardownMachines(machinesOf(LAB, mkdtempSync(path.join(tmpdir(), `ferry-${LAB}-old-`))), LAB, NAMES);
    const [pkg] = await Promise.all([buildPackage(dir), buildMachines(machines, LAB, NAMES, mgmtAddress)]);
    control = pkg.control;
  }, 300_000);

  afterAll(async () => {
    await teardownMachines(machines, LAB, NAMES);
  }, 60_000);

  it('takes three machines from zero to a live migration of a running counter from m1 to m2', async () => {
    expect(steps.length).toBeGreaterThan(10);
    for (const step of steps) {
      const t0 = Date.now();
      if (step.as === 'install') await install(step, control);
      else if (step.as === 'copy') await copy(step);
      else {
        let out = '';
        for (const name of step.on) out += await runShell(step, machine(name));
        if (step.id) outputs.set(step.id, out);
      }
      if (process.env.FERRY_GUIDE_TIMES) process.stderr.write(`guide step at line ${step.line} (${step.on.join(',')}): ${Date.now() - t0} ms\n`);
    }

    // What the counter itself says: the same process (instance), its count carried on.
    const before = JSON.parse(outputs.get('before')!) as { instance: string; count: number };
    const after = JSON.parse(outputs.get('after')!) as { instance: string; count: number };
    expect(after.instance).toBe(before.instance);
    expect(after.count).toBeGreaterThan(before.count);
    // Where ferry says it runs, and that exactly one copy runs, on m2.
    const ps = JSON.parse(await mustShellIn(machine('m1'), 'ferry ps --json')) as WorkloadInfo[];
    expect(ps.map((w) => [w.name, w.host, w.state, w.address])).toEqual([['counter', 'm2', 'running', '198.51.100.10']]);
    const copies = runningCounters();
    expect(copies).toHaveLength(1);
    expect(copies[0]!.cgroup).toMatch(/\/ferry\/m2\//);
  }, 600_000);
});
