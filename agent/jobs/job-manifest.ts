// A job's images directory (docs/hpc.md): DIR/<member>/ holds each member's snapshots, and
// DIR/job.json names the snapshot of every member in the last complete cut. It is written
// atomically (a temporary file synced and renamed over the old one, then the directory synced),
// so a reader sees the previous cut or the new one, never a mixture.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { JOB_JSON, JobImagesManifest, memberImages } from '../../shared/job-group.ts';
import { parseRecord } from '../../shared/records.ts';
import { fsyncPath, snapshotAt } from './image-store.ts';

export function writeJobManifest(images: string, manifest: JobImagesManifest): string {
  const m = JobImagesManifest.parse(manifest);
  for (const x of m.members)
    if (!snapshotAt(memberImages(images, x.workload), x.seq)) throw new FerryError(ErrorCode.Internal, `${memberImages(images, x.workload)} has no snapshot ${x.seq}: the job's cut is incomplete`, { details: { images, workload: x.workload, seq: x.seq } });
  mkdirSync(images, { recursive: true });
  const file = path.join(images, JOB_JSON);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(m, null, 1));
  fsyncPath(tmp);
  renameSync(tmp, file);
  fsyncPath(images);
  return file;
}

export function readJobManifest(images: string): JobImagesManifest {
  const file = path.join(images, JOB_JSON);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError(ErrorCode.NotFound, `${images} holds no job checkpoint (no ${JOB_JSON})`, { details: { images } });
    throw FerryError.from(err);
  }
  const r = parseRecord(JobImagesManifest, text);
  if (!r.ok) throw new FerryError(ErrorCode.BadImage, `${file}: ${r.reason}`, { details: { images } });
  for (const x of r.value.members)
    if (!snapshotAt(memberImages(images, x.workload), x.seq)) throw new FerryError(ErrorCode.BadImage, `${file} names snapshot ${x.seq} of ${x.workload}, which ${memberImages(images, x.workload)} does not hold`, { details: { images, workload: x.workload } });
  return r.value;
}
