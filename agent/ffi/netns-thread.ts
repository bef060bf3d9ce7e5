// Sockets created inside another network namespace without moving the agent's main thread.
// setns(CLONE_NEWNET) is per thread and a socket belongs for life to the namespace of the thread
// that created it, so one worker thread enters the namespace and creates the socket; descriptors
// are per process, so the main thread uses it from then on. Calls are synchronous (the main
// thread waits on a shared word), like the rest of the engine.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { SyscallError } from './syscalls.ts';

// The worker is plain JavaScript: a TypeScript loader does not reach worker threads.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const koffi = require(workerData.koffi);
const lib = koffi.load('libc.so.6');
const open = lib.func('int open(const char *p, int f, int m)');
const close = lib.func('int close(int fd)');
const setns = lib.func('int setns(int fd, int t)');
const socket = lib.func('int socket(int d, int t, int p)');
const word = new Int32Array(workerData.shared);
const done = (v) => { Atomics.store(word, 1, v); Atomics.store(word, 0, 1); Atomics.notify(word, 0); };
parentPort.on('message', (m) => {
  const ns = open(m.ns, 0o2000000, 0);
  if (ns < 0) return done(-koffi.errno());
  const r = setns(ns, 0x40000000);
  const e = koffi.errno();
  close(ns);
  if (r < 0) return done(-e);
  const s = socket(m.domain, m.type | 0o2000000, m.protocol);
  done(s < 0 ? -koffi.errno() : s);
});
done(0);
`;

let worker: Worker | null = null;
const word = new Int32Array(new SharedArrayBuffer(8));

function waitDone(what: string): number {
  if (Atomics.wait(word, 0, 0, 10_000) === 'timed-out') throw new FerryError(ErrorCode.Timeout, `netns thread: ${what} took over 10 s`);
  Atomics.store(word, 0, 0);
  return Atomics.load(word, 1);
}

function ensureWorker(): Worker {
  if (worker) return worker;
  Atomics.store(word, 0, 0);
  worker = new Worker(WORKER, { eval: true, workerData: { koffi: createRequire(import.meta.url).resolve('koffi'), shared: word.buffer } });
  worker.unref();
  worker.on('error', () => {
    worker = null;
  });
  waitDone('start');
  return worker;
}

/**
 * socket(domain, type, protocol) created inside the network namespace at `nsPath` (a
 * /run/netns/NAME file or /proc/PID/ns/net). The descriptor is close-on-exec and the caller's.
 */
export function socketIn(nsPath: string, domain: number, type: number, protocol: number): number {
  const w = ensureWorker();
  w.postMessage({ ns: nsPath, domain, type, protocol });
  const r = waitDone(`socket in ${nsPath}`);
  if (r < 0) throw new SyscallError(`socket in ${nsPath}`, -r, { netns: nsPath });
  return r;
}
