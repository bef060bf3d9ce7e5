// The keys of a KV bucket, read in one answer from its stream (the subjects it holds) rather
// than with kv.keys(): that one runs an ordered push consumer and ends at the first idle
// heartbeat or at a pending count read before delivery started, and under load it has ended
// early, so `ferry history` listed nothing. A key whose last entry deletes it is listed too; the
// caller's get() finds no value there and skips it.
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, FerryError } from '../shared/errors.ts';

export type KeyLister = () => Promise<string[]>;

export function streamKeyLister(nc: NatsConnection, bucket: string): KeyLister {
  const prefix = `$KV.${bucket}.`;
  return async () => {
    try {
      // The bucket is open already: no need to ask again whether JetStream answers.
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const si = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}>` });
      return Object.keys(si.state.subjects ?? {})
        .map((s) => s.slice(prefix.length))
        .sort();
    } catch (err) {
      throw new FerryError(ErrorCode.Unavailable, `cannot list the keys of KV bucket ${bucket}: ${(err as Error).message}`, { cause: err });
    }
  };
}
