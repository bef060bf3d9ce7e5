// `npm run build`: the `ferry` command as JavaScript in dist/ (tsc with
// rewriteRelativeImportExtensions, no type check: `npm run typecheck` does that), so that it
// starts without compiling TypeScript. dist/.stamp records every compiled source's mtime and
// size as they were BEFORE compiling; bin/ferry.js runs dist/ only while they all still match,
// and the sources through tsx otherwise. A source edited during the build leaves no stamp.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { STAMP_FILE, type BuildStamp } from './stamp.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.join(ROOT, 'dist');
const SOURCE_DIRS = ['cli', 'shared', 'agent', 'coordinator', 'deploy'];

type Stats = Map<string, [number, number]>;

function sourceStats(): Stats {
  const out: Stats = new Map();
  const walk = (dir: string) => {
    for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts')) {
        const s = statSync(path.join(ROOT, rel));
        out.set(rel, [s.mtimeMs, s.size]);
      }
    }
  };
  for (const d of SOURCE_DIRS) walk(d);
  return out;
}

const t0 = performance.now();
mkdirSync(DIST, { recursive: true });
const stamp = path.join(DIST, STAMP_FILE);
rmSync(stamp, { force: true });
const before = sourceStats();
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json'), '--listEmittedFiles'], { cwd: ROOT, encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write(`build: tsc failed\n${r.stdout}${r.stderr}`);
  process.exit(1);
}
const emitted = r.stdout
  .split('\n')
  .map((l) => /^TSFILE: (.+\.js)$/.exec(l.trim())?.[1])
  .filter((f): f is string => !!f)
  .map((f) => path.relative(DIST, f).replace(/\.js$/, '.ts'));
const after = sourceStats();
const sources: BuildStamp['sources'] = [];
for (const rel of emitted) {
  const b = before.get(rel);
  const a = after.get(rel);
  if (!b || !a || b[0] !== a[0] || b[1] !== a[1]) {
    process.stderr.write(`build: ${rel} changed while it was compiled; run the build again\n`);
    process.exit(1);
  }
  sources.push([rel, b[0], b[1]]);
}
writeFileSync(stamp, JSON.stringify({ builtAt: new Date().toISOString(), sources } satisfies BuildStamp));
process.stdout.write(`build: ${sources.length} files into dist/ in ${Math.round(performance.now() - t0)} ms\n`);
