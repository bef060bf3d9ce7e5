// The namespace thread (started by netns-thread.ts): setns moves only the calling thread into a
// network or IPC namespace, so this thread enters one for each request and works there. The
// libc calls are the agent's own (syscalls.ts): this thread loads koffi once, like the main one.
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { answer, parseNamespaceRequest, type NamespaceChannel, type NamespaceRequest } from './netns-channel.ts';
import { O, SyscallError, closeFd, openFile, sys } from './syscalls.ts';

const CLONE_NEWNET = 0x40000000;
const CLONE_NEWIPC = 0x08000000;
const EINVAL = 22;
const EIO = 5;

if (!parentPort) throw new Error('netns-worker runs as a worker thread (see netns-thread.ts)');
const channel = workerData as NamespaceChannel;
const word = new Int32Array(channel.answer);
const text = Buffer.from(channel.text);

function enter(nsPath: string, nsType: number): void {
  const fd = openFile(nsPath, O.RDONLY | O.CLOEXEC);
  try {
    sys('setns', fd, nsType);
  } finally {
    try {
      closeFd(fd);
    } catch {
      // setns's outcome is the answer; a failed close of a read-only descriptor changes nothing
    }
  }
}

function serve(req: NamespaceRequest): number {
  if (req.op === 'read') {
    enter(req.ns, CLONE_NEWIPC);
    return text.write(req.files.map((f) => readFileSync(f, 'utf8')).join(''), 0, 'utf8');
  }
  enter(req.ns, CLONE_NEWNET);
  // SOCK_CLOEXEC has O_CLOEXEC's value.
  return sys('socket', req.domain, req.type | O.CLOEXEC, req.protocol);
}

/** -errno of what failed: a libc call, or a file read (Node's errno is already negative). */
function failure(err: unknown): number {
  if (err instanceof SyscallError) return -err.errno;
  const errno = (err as NodeJS.ErrnoException).errno;
  return typeof errno === 'number' && errno < 0 ? errno : -EIO;
}

parentPort.on('message', (m: unknown) => {
  const req = parseNamespaceRequest(m);
  if (!req) return answer(word, -EINVAL);
  try {
    answer(word, serve(req));
  } catch (err) {
    answer(word, failure(err));
  }
});
answer(word, 0);
