// A coordinator may start before its NATS cluster has elected a JetStream leader (a fresh
// cluster, or one that lost a node): opening a bucket then fails for a while. It waits for that
// state, retrying with backoff, instead of exiting.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../shared/log.ts';

export async function untilJetStream<T>(open: () => Promise<T>, log: Logger): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open();
    } catch (err) {
      if (attempt % 20 === 5) log.warn({ err: (err as Error).message }, 'JetStream not ready yet: waiting');
      await sleep(Math.min(100 * 2 ** Math.min(attempt, 4), 1_000));
    }
  }
}
