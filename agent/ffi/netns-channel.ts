// How the main thread and the namespace thread (netns-thread.ts, netns-worker.ts) talk. A
// request goes as a message; the answer comes back through shared memory, because the main
// thread waits for it synchronously (Atomics.wait) and so cannot receive a message meanwhile.

/** A request to the namespace thread. Each op has its namespace type: sockets in a network namespace, reads in an IPC one. */
export type NamespaceRequest =
  | { op: 'socket'; ns: string; domain: number; type: number; protocol: number }
  | { op: 'read'; ns: string; files: readonly string[] };

/** The worker's workerData: the answer word pair and the buffer a read's text lands in. */
export interface NamespaceChannel {
  /** Int32 [0]: 1 once an answer is there; [1]: the answer (>= 0: a descriptor or a byte count; < 0: -errno). */
  answer: SharedArrayBuffer;
  /** A read's text, UTF-8 (longer text is cut). */
  text: SharedArrayBuffer;
}

const isInt = (v: unknown): v is number => Number.isInteger(v);

/**
 * The request in a message, or null: the message crossed the thread boundary as a structured
 * clone, which no type checker has seen.
 */
export function parseNamespaceRequest(m: unknown): NamespaceRequest | null {
  if (typeof m !== 'object' || m === null) return null;
  const r = m as Record<string, unknown>;
  if (typeof r.ns !== 'string' || r.ns === '') return null;
  if (r.op === 'socket' && isInt(r.domain) && isInt(r.type) && isInt(r.protocol)) return { op: 'socket', ns: r.ns, domain: r.domain, type: r.type, protocol: r.protocol };
  if (r.op === 'read' && Array.isArray(r.files) && r.files.every((f) => typeof f === 'string')) return { op: 'read', ns: r.ns, files: r.files };
  return null;
}

/** The worker's side: posts an answer and wakes the waiting main thread. */
export function answer(word: Int32Array, value: number): void {
  Atomics.store(word, 1, value);
  Atomics.store(word, 0, 1);
  Atomics.notify(word, 0);
}

/** The main thread's side: the next answer, or null when none came within timeoutMs. */
export function awaitAnswer(word: Int32Array, timeoutMs: number): number | null {
  if (Atomics.wait(word, 0, 0, timeoutMs) === 'timed-out') return null;
  Atomics.store(word, 0, 0);
  return Atomics.load(word, 1);
}
