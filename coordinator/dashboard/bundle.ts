// The page's script: page/app.ts with the schemas and chart code it imports (zod included),
// bundled once per coordinator process by esbuild (which tsx, a runtime dependency, brings) and
// kept in memory. Nothing is fetched from anywhere else: the browser gets one file.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page', 'app.ts').replace(`${path.sep}dist${path.sep}`, path.sep);

export async function bundlePage(): Promise<string> {
  const out = await build({
    entryPoints: [ENTRY],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}
