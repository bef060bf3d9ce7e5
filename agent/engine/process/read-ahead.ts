// A file read on another thread while this one goes on, then waited for synchronously. The
// engine's collect is synchronous (ptrace work that must not yield), and /proc/PID/smaps costs
// the kernel a walk of every page table: 15-25 ms for a GiB, inside the downtime. Read by a
// worker, it overlaps the injected calls of the same collect on the host's other CPU.
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { readFileSync } from 'node:fs';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
parentPort.on('message', ({ file, port, done }) => {
  let reply;
  try {
    reply = { text: readFileSync(file, 'utf8') };
  } catch (err) {
    reply = { error: String(err && err.code ? err.code : err) };
  }
  port.postMessage(reply);
  port.close();
  Atomics.store(done, 0, 1);
  Atomics.notify(done, 0);
});
`;

let reader: Worker | null = null;

/** Starts the reading thread ahead of need (its start takes tens of ms). */
export function warmReadAhead(): void {
  if (reader) return;
  reader = new Worker(WORKER_SOURCE, { eval: true });
  reader.unref();
  // A dead reader is replaced at the next read; a read that was waiting on it falls back (see text()).
  reader.once('error', () => (reader = null));
  reader.once('exit', () => (reader = null));
}

/** A file being read by the reading thread. */
export class ReadAhead {
  #result: string | null = null;

  constructor(
    readonly file: string,
    private readonly port: MessagePort | null,
    private readonly done: Int32Array | null,
  ) {}

  /**
   * The file's text: waits for the reading thread, or reads it here if that thread is gone or
   * late. Throws as readFileSync does.
   */
  text(timeoutMs = 2000): string {
    if (this.#result !== null) return this.#result;
    if (this.port && this.done && Atomics.wait(this.done, 0, 0, timeoutMs) !== 'timed-out') {
      const m = receiveMessageOnPort(this.port)?.message as { text?: string; error?: string } | undefined;
      this.port.close();
      if (typeof m?.text === 'string') return (this.#result = m.text);
    }
    this.port?.close();
    // The thread failed or was late: read here, so an error is the one a direct read would throw.
    return (this.#result = readFileSync(this.file, 'utf8'));
  }
}

/** Starts reading `file` on the reading thread; `text()` gets it. */
export function readAhead(file: string): ReadAhead {
  warmReadAhead();
  if (!reader) return new ReadAhead(file, null, null);
  const { port1, port2 } = new MessageChannel();
  const done = new Int32Array(new SharedArrayBuffer(4));
  reader.postMessage({ file, port: port2, done }, [port2]);
  return new ReadAhead(file, port1, done);
}
