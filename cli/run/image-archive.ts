// `ferry image export|import|inspect`: an image as one file. The archive is a tar stream
// compressed with zstd (Debian's tar and zstd; zstd adds a checksum to every frame), holding
// the image's files and ferry-archive.json with the SHA-256 and size of each. Import and
// inspect treat the archive as untrusted: only plain files and directories with plain names,
// every checksum checked and nothing extra, then the image itself through its schema.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { JobManifest, MANIFEST_JSON } from '../../shared/job-image.ts';
import { parseRecord } from '../../shared/records.ts';
import { beginSnapshot, currentSnapshot, resolveImageDir, syncTree } from '../../agent/jobs/image-store.ts';
import { type ImageSummary, inspectImage } from '../../agent/engine/image/inspect.ts';
import { flattenImage } from '../../agent/engine/image/flatten.ts';
import { bytes } from '../format.ts';
import { printResult } from '../output.ts';
import { describeImage } from './engine.ts';

const ARCHIVE_JSON = 'ferry-archive.json';
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,200}){0,4}$/;

const ArchiveIndex = z.strictObject({
  format: z.literal(1),
  createdAt: z.string(),
  files: z.array(z.strictObject({ path: z.string().regex(SAFE_NAME), bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })).max(100_000),
});
type ArchiveIndex = z.infer<typeof ArchiveIndex>;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => reject(new FerryError(ErrorCode.Unsupported, `${cmd}: ${e.message} (Debian packages tar and zstd)`, { cause: e })));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new FerryError(ErrorCode.BadImage, `${cmd} ${args.join(' ')} failed (${code}): ${err.trim()}`))));
  });
}

/** Every file under dir, relative, sorted. */
function filesOf(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesOf(dir, path.join(rel, e.name)) : [path.join(rel, e.name)]))
    .sort();
}

function sha256(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

export async function exportImage(dir: string, file: string, opts: { json: boolean }): Promise<void> {
  const snapshot = resolveImageDir(path.resolve(dir));
  inspectImage(snapshot); // a broken image is refused here, not found out at import
  const index: ArchiveIndex = { format: 1, createdAt: new Date().toISOString(), files: [] };
  // Self-contained: pages an incremental checkpoint keeps in the directory's store come along.
  const flat = mkdtempSync(path.join(os.tmpdir(), 'ferry-export-image-'));
  try {
    flattenImage(snapshot, flat);
    await exportFlat(snapshot, flat, file, index, opts);
  } finally {
    rmSync(flat, { recursive: true, force: true });
  }
}

async function exportFlat(snapshot: string, src: string, file: string, index: ArchiveIndex, opts: { json: boolean }): Promise<void> {
  for (const f of filesOf(src)) {
    if (f === ARCHIVE_JSON) continue;
    if (!SAFE_NAME.test(f)) throw new FerryError(ErrorCode.BadImage, `${src}/${f}: not a file name an image holds`);
    index.files.push({ path: f, bytes: statSync(path.join(src, f)).size, sha256: await sha256(path.join(src, f)) });
  }
  const staging = mkdtempSync(path.join(os.tmpdir(), 'ferry-export-'));
  const out = path.resolve(file);
  const partial = `${out}.partial`;
  try {
    writeFileSync(path.join(staging, ARCHIVE_JSON), JSON.stringify(index, null, 1));
    // The index first, then the image's files; zstd with its frame checksum, written beside and renamed.
    await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-I', 'zstd -q -T0 --check', '-cf', partial, '-C', staging, ARCHIVE_JSON, '-C', src, ...index.files.map((f) => f.path)]);
    renameSync(partial, out);
  } finally {
    rmSync(staging, { recursive: true, force: true });
    rmSync(partial, { force: true });
  }
  const total = index.files.reduce((a, f) => a + f.bytes, 0);
  const archiveBytes = statSync(out).size;
  printResult(opts.json, { image: snapshot, file: out, files: index.files.length, imageBytes: total, archiveBytes }, (v) => `exported ${v.image} to ${v.file}: ${v.files} files, ${bytes(v.imageBytes)} -> ${bytes(v.archiveBytes)}`);
}

/** Unpacks an archive into `into` (an empty directory) and checks it whole; returns its index. */
async function unpackChecked(file: string, into: string): Promise<ArchiveIndex> {
  if (!existsSync(file) || !statSync(file).isFile()) throw new FerryError(ErrorCode.NotFound, `${file}: no such archive`);
  // Listed before anything is written: only plain files and directories with plain names.
  const listing = await run('tar', ['-I', 'zstd -q', '-tvf', file]);
  for (const line of listing.split('\n').filter(Boolean)) {
    const name = line.split(/\s+/).slice(5).join(' ').replace(/\/$/, '');
    if (!/^[-d]/.test(line) || (name !== '.' && !SAFE_NAME.test(name.replace(/^\.\//, '')))) throw new FerryError(ErrorCode.BadImage, `${file}: refused member "${name}" (${line[0]}): an image archive holds plain files only`);
  }
  await run('tar', ['-I', 'zstd -q', '-xf', file, '-C', into, '--no-same-owner', '--no-same-permissions', '--no-overwrite-dir']);
  const parsed = existsSync(path.join(into, ARCHIVE_JSON)) ? parseRecord(ArchiveIndex, readFileSync(path.join(into, ARCHIVE_JSON), 'utf8')) : ({ ok: false, reason: 'missing' } as const);
  if (!parsed.ok) throw new FerryError(ErrorCode.BadImage, `${file}: ${ARCHIVE_JSON} ${parsed.reason}`);
  const index = parsed.value;
  const listed = new Set(index.files.map((f) => f.path));
  const extra = filesOf(into).filter((f) => f !== ARCHIVE_JSON && !listed.has(f));
  if (extra.length) throw new FerryError(ErrorCode.BadImage, `${file}: files outside its index: ${extra.slice(0, 5).join(', ')}`);
  for (const f of index.files) {
    const p = path.join(into, f.path);
    if (!existsSync(p)) throw new FerryError(ErrorCode.BadImage, `${file}: ${f.path} is missing`);
    const [size, sum] = [statSync(p).size, await sha256(p)];
    if (size !== f.bytes || sum !== f.sha256) throw new FerryError(ErrorCode.BadImage, `${file}: ${f.path} fails its checksum (${size} bytes, sha256 ${sum.slice(0, 12)}…; expected ${f.bytes}, ${f.sha256.slice(0, 12)}…)`, { details: { file: f.path } });
  }
  rmSync(path.join(into, ARCHIVE_JSON));
  const manifest = path.join(into, MANIFEST_JSON);
  if (existsSync(manifest)) {
    const m = parseRecord(JobManifest, readFileSync(manifest, 'utf8'));
    if (!m.ok) throw new FerryError(ErrorCode.BadImage, `${file}: ${MANIFEST_JSON} ${m.reason}`);
  }
  inspectImage(into);
  return index;
}

export async function importImage(file: string, dir: string, opts: { json: boolean }): Promise<void> {
  const images = path.resolve(dir);
  const snap = beginSnapshot(images);
  let published: string;
  try {
    await unpackChecked(path.resolve(file), snap.dir);
    syncTree(snap.dir);
    published = snap.publish();
  } catch (err) {
    snap.abandon();
    throw err;
  }
  const workload = existsSync(path.join(published, MANIFEST_JSON)) ? (parseRecord(JobManifest, readFileSync(path.join(published, MANIFEST_JSON), 'utf8')) as { ok: true; value: JobManifest }).value.workload : null;
  printResult(opts.json, { file: path.resolve(file), images, snapshot: published, seq: currentSnapshot(images)!.seq, workload }, (v) =>
    `imported ${v.file} into ${v.images} as snapshot ${v.seq}${v.workload ? ` of workload ${v.workload}: \`ferry restore ${v.workload} --images ${v.images}\`` : ''}`,
  );
}

/** inspect of an image directory, a workload's images directory, or an archive (unpacked to a temporary directory). */
export async function inspectAny(target: string, opts: { json: boolean }): Promise<void> {
  const abs = path.resolve(target);
  let summary: ImageSummary & { archive?: { file: string; files: number; archiveBytes: number }; workload?: JobManifest };
  if (existsSync(abs) && statSync(abs).isFile()) {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'ferry-inspect-'));
    try {
      const index = await unpackChecked(abs, tmp);
      summary = { ...inspectImage(tmp), dir: abs, archive: { file: abs, files: index.files.length, archiveBytes: statSync(abs).size }, ...manifestOf(tmp) };
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  } else {
    const dir = resolveImageDir(abs);
    summary = { ...inspectImage(dir), ...manifestOf(dir) };
  }
  printResult(opts.json, summary, (v) =>
    [
      ...(v.archive ? [`archive ${v.archive.file}: ${v.archive.files} files, ${bytes(v.archive.archiveBytes)}, every SHA-256 checked`] : []),
      ...(v.workload ? [`workload ${v.workload.workload}: snapshot ${v.workload.seq} taken ${v.workload.takenAt} on ${v.workload.host}, command ${v.workload.command.join(' ')}`] : []),
      describeImage(v),
    ].join('\n'),
  );
}

function manifestOf(dir: string): { workload?: JobManifest } {
  const f = path.join(dir, MANIFEST_JSON);
  if (!existsSync(f)) return {};
  const m = parseRecord(JobManifest, readFileSync(f, 'utf8'));
  if (!m.ok) throw new FerryError(ErrorCode.BadImage, `${f}: ${m.reason}`);
  return { workload: m.value };
}
