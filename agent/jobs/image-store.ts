// An images directory on shared storage, written so that a crash at any point leaves it with a
// complete image (shared/job-image.ts describes the layout): a snapshot is built in a partial
// directory beside the others, every file and the directory synced, renamed into place, and
// then `current` is swapped to it by renaming a new symlink over the old one. Readers follow
// `current` only; older snapshots, and pages stores the new one does not use, are pruned after
// the swap.
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { CURRENT_LINK, SNAPSHOT_RE, snapshotName } from '../../shared/job-image.ts';
import { IMAGE_JSON, STORE_RE, storeName } from '../../shared/image-format.ts';

/** A file or directory to stable storage. */
export function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Every file of a directory tree, then the directories themselves, to stable storage. */
export function syncTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) syncTree(p);
    else if (e.isFile()) fsyncPath(p);
  }
  fsyncPath(dir);
}

/**
 * The snapshot `current` names, or null when the directory holds none. The link is read as
 * untrusted: it must name a snapshot directly inside DIR. A plain image directory (image.json
 * at its top, as `ferry checkpoint PID` writes) is its own snapshot.
 */
export function currentSnapshot(dir: string): { dir: string; seq: number } | null {
  const link = path.join(dir, CURRENT_LINK);
  let target: string;
  try {
    if (!lstatSync(link).isSymbolicLink()) throw new FerryError(ErrorCode.BadImage, `${link} is not a symlink`, { details: { dir } });
    target = readlinkSync(link);
  } catch (err) {
    if (err instanceof FerryError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw FerryError.from(err);
    return existsSync(path.join(dir, IMAGE_JSON)) ? { dir, seq: 0 } : null;
  }
  const m = SNAPSHOT_RE.exec(target);
  if (!m) throw new FerryError(ErrorCode.BadImage, `${link} points at "${target}", not at a snapshot of this directory`, { details: { dir, target } });
  return { dir: path.join(dir, target), seq: Number(m[1]) };
}

/** The image directory a reader uses: `current`'s snapshot, or DIR itself when it is a plain image. */
export function resolveImageDir(dir: string): string {
  const cur = currentSnapshot(dir);
  if (!cur) throw new FerryError(ErrorCode.NotFound, `${dir}: no image here (no ${IMAGE_JSON}, and no complete checkpoint: no ${CURRENT_LINK} snapshot)`, { details: { dir } });
  return cur.dir;
}

/**
 * A snapshot being written: fill `dir`, then publish() it, or abandon() it. A job's members
 * stage() theirs first (complete and in place, but not current: readers of `current` still see
 * the previous one, which stays), and commit() once every member's is staged.
 */
export interface PendingSnapshot {
  dir: string;
  seq: number;
  /** `store`: the pages store the snapshot refers to (every other store goes with the old snapshots). */
  publish(store?: string): string;
  /** Synced and renamed into place as ckpt-N; `current` and the older snapshots untouched. */
  stage(): string;
  /** A staged snapshot becomes `current`; the older ones, and stores it does not use, go. */
  commit(store?: string): string;
  /** Removes what was written, staged or not (never a committed snapshot). */
  abandon(): void;
}

/** Starts the next snapshot of an images directory (created if needed). */
export function beginSnapshot(images: string): PendingSnapshot {
  mkdirSync(images, { recursive: true });
  if (existsSync(path.join(images, IMAGE_JSON)))
    throw new FerryError(ErrorCode.InvalidRequest, `${images} holds a plain image (of \`ferry checkpoint PID\`): give a workload's checkpoints a directory of their own`, { details: { images } });
  // Leftovers of a crash halfway are never published: they go now.
  for (const e of readdirSync(images)) if (e.startsWith('.ckpt-') || e.startsWith(`.${CURRENT_LINK}.`)) rmSync(path.join(images, e), { recursive: true, force: true });
  const taken = readdirSync(images).map((e) => SNAPSHOT_RE.exec(e)?.[1]).filter((x): x is string => x !== undefined).map(Number);
  const seq = Math.max(0, ...taken, currentSnapshot(images)?.seq ?? 0) + 1;
  const name = snapshotName(seq);
  const partial = path.join(images, `.${name}.partial`);
  const final = path.join(images, name);
  mkdirSync(partial);
  let state: 'writing' | 'staged' | 'committed' = 'writing';
  const stage = () => {
    if (state !== 'writing') throw new FerryError(ErrorCode.Internal, `${final} is ${state} already`);
    syncTree(partial);
    renameSync(partial, final);
    fsyncPath(images);
    state = 'staged';
    return final;
  };
  const commit = (store?: string) => {
    if (state !== 'staged') throw new FerryError(ErrorCode.Internal, `${final} is not staged (${state})`);
    const tmpLink = path.join(images, `.${CURRENT_LINK}.${process.pid}`);
    rmSync(tmpLink, { force: true });
    symlinkSync(name, tmpLink);
    renameSync(tmpLink, path.join(images, CURRENT_LINK));
    fsyncPath(images);
    state = 'committed';
    // Only now may the previous snapshots go.
    for (const e of readdirSync(images)) if ((SNAPSHOT_RE.test(e) && e !== name) || (STORE_RE.test(e) && e !== store)) rmSync(path.join(images, e), { recursive: true, force: true });
    return final;
  };
  return {
    dir: partial,
    seq,
    publish: (store?: string) => {
      stage();
      return commit(store);
    },
    stage,
    commit,
    abandon: () => {
      if (state === 'committed') return;
      rmSync(state === 'staged' ? final : partial, { recursive: true, force: true });
    },
  };
}

/** The snapshot ckpt-`seq` of an images directory, when it is there (a job's manifest names it). */
export function snapshotAt(images: string, seq: number): { dir: string; seq: number } | null {
  const dir = path.join(images, snapshotName(seq));
  return existsSync(path.join(dir, IMAGE_JSON)) ? { dir, seq } : null;
}

/** Removes every snapshot and the link (a job that ended): a later launch starts afresh. */
export function retireSnapshots(images: string): void {
  if (!existsSync(images)) return;
  rmSync(path.join(images, CURRENT_LINK), { force: true });
  fsyncPath(images);
  for (const e of readdirSync(images)) if (SNAPSHOT_RE.test(e) || STORE_RE.test(e) || e.startsWith('.ckpt-')) rmSync(path.join(images, e), { recursive: true, force: true });
}

/**
 * A new pages store's name: one no snapshot refers to. Stores are never reused across trackers:
 * a store a crashed checkpoint wrote to is left for the next publish to remove.
 */
export function nextStore(images: string): string {
  mkdirSync(images, { recursive: true });
  const taken = readdirSync(images).map((e) => STORE_RE.exec(e)?.[1]).filter((x): x is string => x !== undefined).map(Number);
  return storeName(Math.max(0, ...taken) + 1);
}
