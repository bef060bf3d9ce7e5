// An append-only pages store: one file per process in a directory beside a workload's
// snapshots (shared/job-image.ts). Bytes once written never change, so every image that refers
// to them stays valid while later checkpoints append; a crash halfway leaves only unreferenced
// bytes at a file's end.
import { closeSync, constants, fdatasyncSync, fstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { ErrorCode, FerryError } from '../../../shared/errors.ts';
import { pagesFileName } from '../../../shared/image-format.ts';
import { PAGE } from './dirty/types.ts';
import { PagesWriter } from './memory.ts';
import type { StoredRun } from './page-index.ts';

export class PageStore {
  readonly #files = new Map<number, { fd: number; size: number }>();

  /** `dir`: the store's directory (created); `name`: how an image beside it names it (`../store-N`). */
  constructor(
    readonly dir: string,
    readonly name: string,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  #file(pid: number): { fd: number; size: number } {
    let f = this.#files.get(pid);
    if (!f) {
      // Never truncated: bytes an older image refers to stay.
      const fd = openSync(path.join(this.dir, pagesFileName(pid)), constants.O_RDWR | constants.O_CREAT, 0o600);
      f = { fd, size: fstatSync(fd).size };
      this.#files.set(pid, f);
    }
    return f;
  }

  /** The pages file of `pid` as an image in a sibling snapshot directory names it. */
  pagesFile(pid: number): string {
    return `../${this.name}/${pagesFileName(pid)}`;
  }

  /** Appends whole pages of `pid` at `addr`; where they went. */
  append(pid: number, addr: number, data: Buffer): StoredRun {
    const offset = this.reserve(pid, data.length);
    this.writeAt(pid, offset, data);
    return { addr, pages: data.length / PAGE, offset, crc32: crc32(data) };
  }

  /**
   * Room for `bytes` at the end of `pid`'s file, written later with writeAt() (pages copied out
   * while a workload is frozen are written once it runs again).
   */
  reserve(pid: number, bytes: number): number {
    const f = this.#file(pid);
    const at = f.size;
    f.size += bytes;
    return at;
  }

  /** Writes reserved bytes. */
  writeAt(pid: number, offset: number, data: Buffer): void {
    const f = this.#file(pid);
    let done = 0;
    while (done < data.length) done += writeSync(f.fd, data, done, data.length - done, offset + done);
  }

  /** A writer appending to `pid`'s file (for pages the freeze dumps outside the index). */
  writer(pid: number): PagesWriter {
    const f = this.#file(pid);
    return PagesWriter.appending(path.join(this.dir, pagesFileName(pid)), f.size);
  }

  /** After a writer() closed: its appends count in the file's size. */
  grew(pid: number, size: number): void {
    const f = this.#file(pid);
    f.size = Math.max(f.size, size);
  }

  /** Bytes in every file: live and superseded. */
  get totalBytes(): number {
    return [...this.#files.values()].reduce((a, f) => a + f.size, 0);
  }

  /** A run's bytes as stored. */
  read(pid: number, r: StoredRun, into = Buffer.allocUnsafe(r.pages * PAGE)): Buffer {
    const len = r.pages * PAGE;
    const got = readSync(this.#file(pid).fd, into, 0, len, r.offset);
    if (got !== len) throw new FerryError(ErrorCode.Internal, `${this.dir}: pages of pid ${pid} at offset ${r.offset} are short (${got} of ${len} bytes)`);
    return into.subarray(0, len);
  }

  crcOf(pid: number, r: StoredRun): number {
    return crc32(this.read(pid, r));
  }

  /** Every file and the directory to stable storage (before an image referring to them is published). */
  sync(): void {
    for (const f of this.#files.values()) fdatasyncSync(f.fd);
    const d = openSync(this.dir, 'r');
    try {
      fdatasyncSync(d);
    } finally {
      closeSync(d);
    }
  }

  close(): void {
    for (const f of this.#files.values()) closeSync(f.fd);
    this.#files.clear();
  }
}
