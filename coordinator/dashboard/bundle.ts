// The page's script: page/app.ts with the schemas and chart code it imports (zod included),
// bundled once per coordinator process by esbuild (which tsx, a runtime dependency, brings) and
// kept in memory. Nothing is fetched from anywhere else: the browser gets one file. The Debian
// package has neither the sources nor esbuild: `npm run package` bundles the page once into
// page.bundle.js beside this module (deploy/package/build-deb.sh), which is served as it is.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ENTRY = path.join(HERE, 'page', 'app.ts').replace(`${path.sep}dist${path.sep}`, path.sep);
/** The prebuilt bundle's name, beside the compiled module (written only into the package). */
export const PREBUILT_PAGE = 'page.bundle.js';

export async function bundlePage(): Promise<string> {
  const prebuilt = path.join(HERE, PREBUILT_PAGE);
  if (existsSync(prebuilt)) return readFileSync(prebuilt, 'utf8');
  const { build } = await import('esbuild');
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
