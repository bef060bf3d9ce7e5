// Shared by the pre-copy tests: a real authenticated stream pair carrying the page stream into a
// shadow, stopping a process tree for the final round, and looking at its mappings.
import { readdirSync, readFileSync } from 'node:fs';
import { PageSender, type PageStreamOptions } from '../../../agent/transfer/pages.ts';
import { PageReceiver, type ReceivedRound } from '../../../agent/transfer/page-receiver.ts';
import { type PageSink, ShadowSink } from '../../../agent/transfer/page-sinks.ts';
import type { DataConnection } from '../../../agent/transfer/stream.ts';
import { loopbackPair } from './stream-peers.ts';

export interface StreamPair {
  sender: PageSender;
  /** Resolves with every round the receiver applied, once the sender finishes. */
  received: Promise<ReceivedRound[]>;
  conns: DataConnection[];
  close(): void;
}

/** A sender and a receiver (applying into `sink`) over an authenticated stream pair on loopback. */
export async function streamPair(sink: PageSink = new ShadowSink(), opts: PageStreamOptions = {}): Promise<StreamPair> {
  const { out, inc } = await loopbackPair();
  const receiver = new PageReceiver(inc, sink);
  const received = (async () => {
    const rounds: ReceivedRound[] = [];
    for (;;) {
      const r = await receiver.receiveRound();
      if (!r) return rounds;
      rounds.push(r);
    }
  })();
  received.catch(() => undefined); // observed by the test that awaits it
  return {
    sender: new PageSender(out, opts),
    received,
    conns: [out, inc],
    close: () => {
      out.destroy();
      inc.destroy();
    },
  };
}

const taskStates = (pid: number): string[] =>
  readdirSync(`/proc/${pid}/task`).map((t) => {
    try {
      return readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').replace(/^.*\) /s, '')[0] ?? '?';
    } catch {
      return 'X';
    }
  });

/** SIGSTOPs every process and waits until all of their threads are stopped. */
export async function stopAll(pids: readonly number[]): Promise<void> {
  for (const p of pids) process.kill(p, 'SIGSTOP');
  const deadline = Date.now() + 10_000;
  while (!pids.every((p) => taskStates(p).every((s) => s === 'T' || s === 't'))) {
    if (Date.now() > deadline) throw new Error(`processes ${pids.join(',')} did not stop`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function continueAll(pids: readonly number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGCONT');
    } catch {
      // gone
    }
  }
}

/** Mappings of a process that carry userfaultfd write-protect registration ("uw" in smaps). */
export function uffdRegistered(pid: number): number {
  return readFileSync(`/proc/${pid}/smaps`, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('VmFlags:') && /\buw\b/.test(l)).length;
}
