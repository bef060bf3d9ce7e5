#!/usr/bin/env node
// The `ferry` command. It runs the build's JavaScript (dist/, `npm run build`) while dist/.stamp
// matches every source it was compiled from (mtime and size: one stat per file, about a
// millisecond), and the TypeScript sources through tsx otherwise, so it never runs stale code.
// FERRY_TSX=1 forces the sources.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function buildIsCurrent() {
  if (process.env.FERRY_TSX === '1') return false;
  try {
    const { sources } = JSON.parse(readFileSync(path.join(root, 'dist/.stamp'), 'utf8'));
    if (!Array.isArray(sources) || sources.length === 0) return false;
    for (const [file, mtimeMs, size] of sources) {
      const s = statSync(path.join(root, file));
      if (s.mtimeMs !== mtimeMs || s.size !== size) return false;
    }
    return true;
  } catch {
    return false;
  }
}

if (buildIsCurrent()) {
  await import('../dist/cli/main.js');
} else {
  if (process.stderr.isTTY && process.env.FERRY_TSX !== '1') process.stderr.write('ferry: dist/ is missing or older than the sources; running them through tsx (slower). `npm run build` rebuilds it.\n');
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/main.ts');
}
