// An image made self-contained: a snapshot whose pages live in a sibling pages store
// (incremental checkpoints) copied with each process's pages in a file of its own, holding only
// the pages the image refers to. What `ferry image export` archives.
import { copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_JSON, type Image, inStore, pagesFileName } from '../../../shared/image-format.ts';
import { PagesReader, PagesWriter } from '../memory/memory.ts';
import { readImage, writeImage } from './image-io.ts';

/** Copies the image in `src` to the empty directory `dest`, pages stores inlined. */
export function flattenImage(src: string, dest: string): Image {
  const img = readImage(src);
  const names = new Set(img.processes.map((p) => p.pagesFile));
  for (const f of readdirSync(src, { withFileTypes: true })) {
    if (!f.isFile() || f.name === IMAGE_JSON || names.has(f.name)) continue;
    copyFileSync(join(src, f.name), join(dest, f.name));
  }
  const processes = img.processes.map((p) => {
    if (!inStore(p.pagesFile)) {
      copyFileSync(join(src, p.pagesFile), join(dest, p.pagesFile));
      return p;
    }
    const own = pagesFileName(p.hostPid);
    const r = new PagesReader(join(src, p.pagesFile));
    const w = new PagesWriter(join(dest, own));
    try {
      const vmas = p.vmas.map((v) => ({ ...v, runs: v.runs.map((run) => w.copy(run, r.read(run))) }));
      return { ...p, pagesFile: own, vmas, pagesBytes: w.offset };
    } finally {
      r.close();
      w.close();
    }
  });
  const out: Image = { ...img, processes };
  writeImage(dest, out);
  return out;
}
