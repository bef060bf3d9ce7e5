// The `ferry` command itself, run as a user would (no cluster needed): exit code 2 for every usage
// error, version, help topics, completion scripts, and the build that is never run stale.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ferry, REPO } from '../integration/helpers/cli.ts';

const T = { timeout: 180_000 };

describe('ferry usage errors exit 2', () => {
  it.each([
    [['migrate', 'web'], /required option '--to <host>'/],
    [['run', '--host', 'h1', '--', 'sleep', '1'], /required option '--name <name>'/],
    [['run', '--name', 'x', '--spread', '--', 'sleep', '1'], /--spread needs --group/],
    [['hosts', '--bogus'], /unknown option '--bogus'/],
    [['stop'], /missing required argument 'name'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['migrate', 'web', '--to', 'h2', '--max-rounds', 'x'], /whole number/],
    [['run', '--host', 'h1', '--name', 'x', '--env', 'NOEQUALS', '--', 'sleep', '1'], /KEY=VALUE/],
    [['help', 'no-such-topic'], /no command or help topic/],
    [['completion', 'fish'], /only bash and zsh/],
  ])('ferry %j', async (args, message) => {
    const r = await ferry(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  }, T.timeout);

  it('with --json a usage error is also a JSON error on stdout', async () => {
    const r = await ferry(['migrate', 'web', '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'FERRY_INVALID_REQUEST', message: expect.stringContaining('--to') } });
  }, T.timeout);
});

describe('ferry about itself', () => {
  const pkg = JSON.parse(execFileSync('cat', [path.join(REPO, 'package.json')], { encoding: 'utf8' })) as { version: string };

  it('version, --version and version --json', async () => {
    expect(await ferry(['version'])).toMatchObject({ code: 0, stdout: `ferry ${pkg.version}\n` });
    expect(await ferry(['--version'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const j = await ferry(['version', '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ name: 'ferry', version: pkg.version, node: process.version, protocol: 1, imageFormat: 1 });
  }, T.timeout);

  it('help topics and help on commands', async () => {
    const codes = await ferry(['help', 'exit-codes']);
    expect(codes.code).toBe(0);
    for (const n of ['0', '1', '2', '3', '4']) expect(codes.stdout).toMatch(new RegExp(`^  ${n}  `, 'm'));
    expect((await ferry(['help', 'json'])).stdout).toContain('migration.accepted');
    const labUp = await ferry(['help', 'lab', 'up']);
    expect(labUp).toMatchObject({ code: 0, stdout: expect.stringContaining('Usage: ferry lab up') });
  }, T.timeout);

  it.each(['bash', 'zsh'])('completion %s: a script bash parses, naming commands, subcommands and options', async (shell) => {
    const r = await ferry(['completion', shell]);
    expect(r.code).toBe(0);
    for (const w of ['migrate', 'watch', 'lab', '"lab up"', '--to', '--downtime-budget', '--stop-and-copy', 'exit-codes']) expect(r.stdout).toContain(w);
    // zsh runs the same function through bashcompinit; bash -n checks its syntax either way.
    const file = path.join(tmpdir(), `ferry-completion-${process.pid}.${shell}`);
    writeFileSync(file, shell === 'zsh' ? r.stdout.split('\n').filter((l) => !l.startsWith('autoload')).join('\n') : r.stdout);
    try {
      execFileSync('bash', ['-n', file]);
      // And it completes: `ferry migrate web --to` offers migrate's options.
      const out = execFileSync('bash', ['-c', `source ${file}; COMP_WORDS=(ferry migrate web --d); COMP_CWORD=3; _ferry; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
      expect(out.trim()).toBe('--downtime-budget');
      const sub = execFileSync('bash', ['-c', `source ${file}; COMP_WORDS=(ferry lab ""); COMP_CWORD=2; _ferry; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
      expect(sub.trim().split(' ')).toEqual(['up', 'status', 'down', 'kill', 'start']);
    } finally {
      rmSync(file, { force: true });
    }
  }, T.timeout);
});

describe('bin/ferry.js never runs a stale build', () => {
  // A checkout of its own: bin/ferry.js, a "source" and a "build" of it that say which ran.
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs dist/ while the stamp matches the sources, the sources through tsx once one changed', () => {
    mkdirSync(path.join(dir, 'bin'));
    mkdirSync(path.join(dir, 'cli'));
    mkdirSync(path.join(dir, 'dist/cli'), { recursive: true });
    for (const f of ['ferry.js', 'build-current.js']) copyFileSync(path.join(REPO, 'bin', f), path.join(dir, 'bin', f));
    symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}');
    writeFileSync(path.join(dir, 'cli/main.ts'), "const from: string = 'source';\nconsole.log(from);\n");
    writeFileSync(path.join(dir, 'dist/cli/main.js'), "console.log('build');\n");
    const s = statSync(path.join(dir, 'cli/main.ts'));
    writeFileSync(path.join(dir, 'dist/.stamp'), JSON.stringify({ builtAt: new Date().toISOString(), sources: [['cli/main.ts', s.mtimeMs, s.size]] }));
    const run = (env: NodeJS.ProcessEnv = {}) => execFileSync(process.execPath, [path.join(dir, 'bin/ferry.js')], { encoding: 'utf8', env: { ...process.env, FERRY_TSX: '', ...env } }).trim();
    expect(run()).toBe('build');
    expect(run({ FERRY_TSX: '1' })).toBe('source');
    writeFileSync(path.join(dir, 'cli/main.ts'), "const from: string = 'source';\nconsole.log(from); // edited\n");
    expect(run()).toBe('source');
    rmSync(path.join(dir, 'dist/.stamp'));
    expect(run()).toBe('source');
  }, T.timeout);
});
