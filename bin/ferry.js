#!/usr/bin/env node
// The `ferry` command. It runs the build's JavaScript (dist/, `npm run build`) while dist/.stamp
// matches every source it was compiled from (mtime and size: one stat per file, about a
// millisecond), and the TypeScript sources through tsx otherwise, so it never runs stale code.
// FERRY_TSX=1 forces the sources.
import { buildIsCurrent } from './build-current.js';

if (buildIsCurrent()) {
  await import('../dist/cli/main.js');
} else {
  if (process.stderr.isTTY && process.env.FERRY_TSX !== '1') process.stderr.write('ferry: dist/ is missing or older than the sources; running them through tsx (slower). `npm run build` rebuilds it.\n');
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/main.ts');
}
