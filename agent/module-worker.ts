// Starts a worker thread from a module file beside the caller, in whichever form the caller
// runs: JavaScript from dist/ (`npm run build`), or TypeScript under tsx or vitest. A loader
// registered in code (bin/ferry.js, vitest) does not reach a worker thread, and on Node 20 nor
// does `--import tsx` in the worker's execArgv (tsx does not register itself in a worker), so a
// TypeScript worker calls tsx's register() first, then imports the module.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** The worker `name` (no extension) in the caller's directory, with the caller's extension. */
export function startModuleWorker(callerUrl: string, name: string, options: WorkerOptions = {}): Worker {
  const ext = path.extname(new URL(callerUrl).pathname);
  const file = new URL(`./${name}${ext}`, callerUrl);
  if (ext !== '.ts') return new Worker(file, options);
  const boot = `import(${JSON.stringify(tsxApi(callerUrl))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(file.href)}); });`;
  return new Worker(boot, { ...options, eval: true });
}

/**
 * The URL of tsx/esm/api's ESM build, found through tsx's package exports: require.resolve
 * picks the CommonJS build, whose register() fails in a worker, and vitest has no
 * import.meta.resolve.
 */
function tsxApi(callerUrl: string): string {
  const manifest = createRequire(callerUrl).resolve('tsx/package.json');
  const { exports } = JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
  const entry = exports['./esm/api']?.import.default;
  if (!entry) throw new Error(`${manifest} exports no ESM tsx/esm/api`);
  return pathToFileURL(path.join(path.dirname(manifest), entry)).href;
}
