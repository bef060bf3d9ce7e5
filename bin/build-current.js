// Whether dist/ (`npm run build`) is current: dist/.stamp matches the mtime and size of every
// source it was compiled from (one stat per file, about a millisecond). bin/ferry.js runs dist/
// only then; `npm run package` rebuilds only when it is not (`node bin/build-current.js`
// exits 0 when current). FERRY_TSX=1 counts as not current.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function buildIsCurrent() {
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

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exit(buildIsCurrent() ? 0 : 1);
