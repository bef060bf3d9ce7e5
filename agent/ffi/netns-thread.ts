// Work inside another process's namespaces without moving the agent's main thread and without
// a fork (which costs 10-30 ms of the agent's time). setns is per thread for the network and IPC
// namespaces, so one worker thread enters the namespace and does the work there:
// - a socket, which belongs for life to the network namespace of the thread that created it
//   (descriptors are per process, so the main thread uses it from then on);
// - reading files that show the reader's own namespace (/proc/sysvipc/*).
// Calls are synchronous (the main thread waits on a shared word), like the rest of the engine.
import type { Worker } from 'node:worker_threads';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { startModuleWorker } from '../module-worker.ts';
import { awaitAnswer, type NamespaceChannel, type NamespaceRequest } from './netns-channel.ts';
import { SyscallError } from './syscalls.ts';

let worker: Worker | null = null;
const channel: NamespaceChannel = { answer: new SharedArrayBuffer(8), text: new SharedArrayBuffer(1 << 20) };
const word = new Int32Array(channel.answer);

function waitDone(what: string): number {
  const r = awaitAnswer(word, 10_000);
  if (r === null) throw new FerryError(ErrorCode.Timeout, `netns thread: ${what} took over 10 s`);
  return r;
}

function ensureWorker(): Worker {
  if (worker) return worker;
  Atomics.store(word, 0, 0);
  worker = startModuleWorker(import.meta.url, 'netns-worker', { workerData: channel });
  worker.unref();
  worker.on('error', () => {
    worker = null;
  });
  waitDone('start');
  return worker;
}

function ask(req: NamespaceRequest, what: string): number {
  ensureWorker().postMessage(req);
  return waitDone(what);
}

/**
 * socket(domain, type, protocol) created inside the network namespace at `nsPath` (a
 * /run/netns/NAME file or /proc/PID/ns/net). The descriptor is close-on-exec and the caller's.
 */
export function socketIn(nsPath: string, domain: number, type: number, protocol: number): number {
  const r = ask({ op: 'socket', ns: nsPath, domain, type, protocol }, `socket in ${nsPath}`);
  if (r < 0) throw new SyscallError(`socket in ${nsPath}`, -r, { netns: nsPath });
  return r;
}

/** The text of files read from inside the IPC namespace at `nsPath` (/proc/PID/ns/ipc), one after the other. */
export function readInIpcNamespace(nsPath: string, files: readonly string[]): string {
  const r = ask({ op: 'read', ns: nsPath, files }, `reading ${files.join(', ')} in ${nsPath}`);
  if (r < 0) throw new SyscallError(`read in ${nsPath}`, -r, { ns: nsPath });
  return Buffer.from(channel.text, 0, r).toString('utf8');
}

/** Starts the thread now (tens of ms), so that the first freeze or restore that needs it does not pay for it. */
export function startNamespaceThread(): void {
  ensureWorker();
}
