// Image directory I/O. image.json is written last and renamed into place, so a directory without
// it is an unfinished checkpoint, never a valid-looking one.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { IMAGE_JSON, IMAGE_MAGIC, IMAGE_VERSION, type Image, ImageSchema, inStore } from '../../../shared/image-format.ts';

export function prepareImageDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
  if (existsSync(join(dir, IMAGE_JSON))) throw new FerryError(ErrorCode.InvalidRequest, `${dir} already holds an image`, { details: { dir } });
}

export function writeImage(dir: string, img: Image): void {
  const tmp = join(dir, `${IMAGE_JSON}.tmp`);
  writeFileSync(tmp, JSON.stringify(img, null, 1));
  renameSync(tmp, join(dir, IMAGE_JSON));
}

export function readImage(dir: string): Image {
  const path = join(dir, IMAGE_JSON);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? ErrorCode.NotFound : ErrorCode.BadImage;
    throw new FerryError(code, `${path}: ${code === ErrorCode.NotFound ? 'no image here' : 'not valid JSON'}`, { details: { dir }, cause: err });
  }
  const head = raw as { magic?: unknown; version?: unknown };
  if (head?.magic !== IMAGE_MAGIC) throw new FerryError(ErrorCode.BadImage, `${path} is not a ferry image`, { details: { dir } });
  if (head.version !== IMAGE_VERSION) throw new FerryError(ErrorCode.BadImage, `${path} has image version ${String(head.version)}, this ferry reads ${IMAGE_VERSION}`, { details: { dir, version: head.version } });
  const r = ImageSchema.safeParse(raw);
  if (!r.success) throw new FerryError(ErrorCode.BadImage, `${path} does not match the image schema: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`, { details: { dir } });
  for (const p of r.data.processes) {
    const f = join(dir, p.pagesFile);
    const size = existsSync(f) ? statSync(f).size : -1;
    // A store's file grows with later checkpoints: it must hold at least what this image needs.
    if (inStore(p.pagesFile) ? size < p.pagesBytes : size !== p.pagesBytes) throw new FerryError(ErrorCode.BadImage, `${f} is ${size < 0 ? 'missing' : `${size} bytes, expected ${p.pagesBytes}`}`, { details: { dir, file: p.pagesFile } });
  }
  for (const sh of r.data.shared) {
    if (sh.kind !== 'memfd') continue;
    const f = join(dir, sh.file);
    const size = existsSync(f) ? statSync(f).size : -1;
    if (size !== sh.bytes) throw new FerryError(ErrorCode.BadImage, `${f} is ${size < 0 ? 'missing' : `${size} bytes, expected ${sh.bytes}`}`, { details: { dir, file: sh.file } });
  }
  return r.data;
}
