// Lets a process in the machine's own namespace talk to the lab: its main thread joins the lab's
// client network namespace. setns(CLONE_NEWNET) is per thread, and Node opens its TCP sockets on
// the main thread, so connections made afterwards originate inside the lab; nothing changes
// in the machine's own namespace.
import { statSync } from 'node:fs';
import { O, closeFd, openFile, sys } from '../../agent/ffi/syscalls.ts';

const CLONE_NEWNET = 0x40000000;

export function inNetns(nsName: string): boolean {
  return statSync('/proc/thread-self/ns/net').ino === statSync(`/run/netns/${nsName}`).ino;
}

export function joinNetns(nsName: string): void {
  if (inNetns(nsName)) return;
  const fd = openFile(`/run/netns/${nsName}`, O.RDONLY | O.CLOEXEC);
  try {
    sys('setns', fd, CLONE_NEWNET);
  } finally {
    closeFd(fd);
  }
}
