// Post-copy's backup on shared storage (--postcopy-backup DIR, docs/postcopy.md): before the
// workload resumes on the destination, the source writes every page post-copy still has to carry
// to DIR/<migration>/, durably, so that losing the source or the link afterwards does not lose the
// workload: the destination then takes what it still lacks from there.
//
// DIR/<migration>/pages-<pid>.img holds a source process's outstanding pages back to back, in the
// order of their runs (sorted by address, as the `postcopy` frame gave them to the destination);
// postcopy.json, written last, says how many pages each file holds and their CRC-32. The
// destination reads the manifest like any untrusted record and checks each file against it.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { MigrationId } from '../../shared/migration.ts';
import { parseRecord } from '../../shared/records.ts';
import { readPages } from '../engine/memory/dirty/read.ts';
import { PAGE, type Span } from '../engine/memory/dirty/types.ts';

const MANIFEST = 'postcopy.json';
const CHUNK = 8 << 20;

export const BackupManifest = z.strictObject({
  migrationId: MigrationId,
  processes: z.array(z.strictObject({ pid: z.int().positive(), pages: z.int().nonnegative(), crc32: z.int().nonnegative() })).max(100_000),
});
export type BackupManifest = z.infer<typeof BackupManifest>;

export const backupDir = (dir: string, migrationId: string): string => path.join(dir, migrationId);
const pagesFile = (dir: string, pid: number): string => path.join(dir, `pages-${pid}.img`);

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes the pages of `runs` (per source pid, sorted) from the frozen processes; returns the bytes written. */
export function writeBackup(dir: string, migrationId: string, runs: ReadonlyMap<number, readonly Span[]>): number {
  const into = backupDir(dir, migrationId);
  mkdirSync(into, { recursive: true, mode: 0o700 });
  const manifest: BackupManifest = { migrationId, processes: [] };
  const buf = Buffer.alloc(CHUNK);
  let total = 0;
  for (const [pid, spans] of runs) {
    const fd = openSync(pagesFile(into, pid), 'w', 0o600);
    let sum = 0;
    let pages = 0;
    try {
      for (const part of chunks(spans, CHUNK)) {
        const bytes = part.reduce((a, s) => a + s.end - s.start, 0);
        const data = buf.subarray(0, bytes);
        const ok = readPages(pid, part, data);
        const bad = ok.indexOf(0);
        if (bad >= 0) throw new FerryError(ErrorCode.Internal, `post-copy backup: a page of process ${pid} cannot be read at the source`);
        writeSync(fd, data);
        sum = crc32(data, sum);
        pages += bytes / PAGE;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    total += pages * PAGE;
    manifest.processes.push({ pid, pages, crc32: sum });
  }
  const tmp = path.join(into, `.${MANIFEST}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(manifest));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path.join(into, MANIFEST));
  fsyncPath(into);
  return total;
}

/** Spans cut so that each group carries at most `bytes`. */
function* chunks(spans: readonly Span[], bytes: number): Generator<Span[]> {
  let group: Span[] = [];
  let size = 0;
  for (const s of spans) {
    for (let at = s.start; at < s.end; ) {
      const end = Math.min(s.end, at + (bytes - size));
      group.push({ start: at, end });
      size += end - at;
      at = end;
      if (size >= bytes) {
        yield group;
        group = [];
        size = 0;
      }
    }
  }
  if (group.length > 0) yield group;
}

/**
 * The backup of one source process, checked against the manifest and the runs the destination
 * was told: page at source address `a` -> its bytes.
 */
export function readBackup(dir: string, migrationId: string, pid: number, runs: readonly Span[]): (addr: number) => Buffer | undefined {
  const into = backupDir(dir, migrationId);
  const parsed = parseRecord(BackupManifest, readFileSync(path.join(into, MANIFEST), 'utf8'));
  if (!parsed.ok) throw new FerryError(ErrorCode.BadImage, `post-copy backup ${into}: ${parsed.reason}`);
  if (parsed.value.migrationId !== migrationId) throw new FerryError(ErrorCode.BadImage, `post-copy backup ${into} belongs to ${parsed.value.migrationId}`);
  const entry = parsed.value.processes.find((p) => p.pid === pid);
  const want = runs.reduce((a, r) => a + (r.end - r.start) / PAGE, 0);
  if (!entry || entry.pages !== want) throw new FerryError(ErrorCode.BadImage, `post-copy backup ${into}: process ${pid} has ${entry?.pages ?? 'no'} pages there, ${want} were outstanding`);
  const file = pagesFile(into, pid);
  if (statSync(file).size !== want * PAGE) throw new FerryError(ErrorCode.BadImage, `post-copy backup ${file}: ${statSync(file).size} bytes, ${want * PAGE} expected`);
  const data = readFileSync(file);
  if (crc32(data) !== entry.crc32) throw new FerryError(ErrorCode.BadImage, `post-copy backup ${file}: checksum mismatch`);
  const index = new Map<number, number>();
  let i = 0;
  for (const r of runs) for (let a = r.start; a < r.end; a += PAGE) index.set(a, i++);
  return (addr) => {
    const at = index.get(addr);
    return at === undefined ? undefined : data.subarray(at * PAGE, (at + 1) * PAGE);
  };
}
