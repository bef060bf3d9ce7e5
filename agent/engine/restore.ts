// Restore from an image directory: check the machine, build a husk per process, fill it, and
// let it run. Any failure kills what was built.
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { type Image, type ProcessImage, fromHex } from '../../shared/image-format.ts';
import { assertCompatible } from './compat.ts';
import { Husk } from './husk.ts';
import { readImage } from './image-io.ts';
import { PagesReader } from './memory.ts';

const chan = diagnostics_channel.channel('ferry:restore');

export interface RestoreResult {
  pid: number;
  processes: number;
  threads: number;
  pagesBytes: number;
  totalMs: number;
  memoryMs: number;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * A killed original stays a zombie until its parent (often init) reaps it, which can take a
 * moment; a live process holding the pid is a conflict.
 */
export function waitPidFree(pid: number, timeoutMs = 5000): void {
  const deadline = performance.now() + timeoutMs;
  while (existsSync(`/proc/${pid}`)) {
    let zombie = false;
    try {
      zombie = / [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/\(.*\)/s, ''));
    } catch {
      continue;
    }
    if (!zombie || performance.now() > deadline) throw new FerryError(ErrorCode.Conflict, `pid ${pid} is in use: cannot restore into it`, { details: { pid } });
    Atomics.wait(sleeper, 0, 0, 5);
  }
}

/** Builds one process up to the point where only registers are missing (the migration path fills memory here). */
export function buildProcess(img: Image, p: ProcessImage, dir: string): { husk: Husk; memoryMs: number } {
  waitPidFree(p.pid);
  const avoid = p.vmas.map((v) => ({ start: fromHex(v.start), end: fromHex(v.end) }));
  const husk = Husk.create(p.pid, avoid);
  try {
    husk.clear(p.vmas);
    husk.mapAll(p.vmas);
    const t = performance.now();
    const reader = new PagesReader(join(dir, p.pagesFile));
    try {
      husk.writePages(p.vmas, reader);
    } finally {
      reader.close();
    }
    const memoryMs = performance.now() - t;
    husk.protectAll(p.vmas);
    husk.setMm(p);
    husk.restoreFds(p.fds);
    husk.restoreProcessState(p);
    husk.createThreads(p.threads);
    return { husk, memoryMs };
  } catch (err) {
    husk.abort();
    throw err;
  }
}

/** Registers and per-thread state go in last; then every thread runs. */
export function finishProcess(husk: Husk, p: ProcessImage): void {
  try {
    for (const t of p.threads) husk.restoreThreadState(t);
    for (const t of p.threads) if (t.tid !== p.pid) husk.setThreadRegs(t);
    const leader = p.threads.find((t) => t.tid === p.pid);
    if (!leader) throw new FerryError(ErrorCode.BadImage, `process ${p.pid} has no leader thread in the image`);
    husk.finishLeader(leader);
    husk.release();
  } catch (err) {
    husk.abort();
    throw err;
  }
}

export function restore(dir: string, opts: { skipMachineCheck?: boolean } = {}): RestoreResult {
  const t0 = performance.now();
  const img = readImage(dir);
  if (!opts.skipMachineCheck) assertCompatible(img.machine);
  if (img.processes.length !== 1) throw new FerryError(ErrorCode.Unsupported, 'images with more than one process are not restorable yet', { details: { processes: img.processes.length } });
  const p = img.processes[0]!;
  const { husk, memoryMs } = buildProcess(img, p, dir);
  finishProcess(husk, p);
  const result = { pid: p.pid, processes: 1, threads: p.threads.length, pagesBytes: p.pagesBytes, totalMs: performance.now() - t0, memoryMs };
  if (chan.hasSubscribers) chan.publish({ kind: 'done', ...result });
  return result;
}
