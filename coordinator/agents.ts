// The coordinator's client for agent endpoints: typed by shared/protocol, nothing else.
//
// NATS core delivers at most once: a request or its reply is lost when a NATS node dies, or
// while either side reconnects. Every migration step is idempotent on the agent (a duplicate joins
// the running step, a replay returns the recorded result: agent/migration/steps.ts #once), and
// reads change nothing, so those are asked again every few seconds until a reply arrives, the
// caller gives up (its signal: the host was lost, the phase timed out) or the endpoint's own
// timeout passes. "No responders" is asked again for 3 s only: longer, the agent is gone. Endpoints that start or change something (run, stop, update, job.*) are asked once.
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { ErrorCode, FerryError } from '../shared/errors.ts';
import { agentApi, type AgentApi, type EndpointSpec } from '../shared/protocol.ts';
import { call } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';

/** How long one ask waits before the same request is sent again. */
export const REASK_AFTER_MS = 5_000;
/** Asks of one call waiting for a reply at once, at most. */
const MAX_OUTSTANDING = 8;
const NO_RESPONDERS_PAUSE_MS = 250;
/** How long "no responders" is taken for an agent reconnecting (its endpoints not yet known on this node) before it is an answer. */
const NO_RESPONDERS_WINDOW_MS = 3_000;
const ONCE_ONLY: ReadonlySet<keyof AgentApi> = new Set(['run', 'stop', 'update', 'job.checkpoint', 'job.restore']);

export class AgentClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly reaskAfterMs = REASK_AFTER_MS,
  ) {}

  async call<E extends keyof AgentApi>(
    host: string,
    endpoint: E,
    request: z.input<AgentApi[E]['request']>,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<z.infer<AgentApi[E]['reply']>> {
    const spec = agentApi[endpoint] as EndpointSpec<z.ZodType, z.ZodType>;
    const subject = subjects.agent(host, endpoint);
    const timeoutMs = opts.timeoutMs ?? spec.timeoutMs;
    if (ONCE_ONLY.has(endpoint)) return call(this.nc, subject, spec, request, { ...opts, timeoutMs }) as Promise<z.infer<AgentApi[E]['reply']>>;
    const deadline = Date.now() + timeoutMs;
    // Earlier asks stay outstanding: the first reply to any of them is the answer (a step held up
    // after its work still answers every ask, in turn).
    return new Promise((resolve, reject) => {
      let outstanding = 0;
      let settled = false;
      let firstNoResponders: number | null = null;
      let timer: NodeJS.Timeout | null = null;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        fn();
      };
      const ask = () => {
        timer = null;
        if (settled) return;
        const left = deadline - Date.now();
        if (left <= 0 || opts.signal?.aborted) {
          if (outstanding === 0) finish(() => reject(opts.signal?.aborted ? new FerryError(ErrorCode.Cancelled, `${subject}: cancelled`) : new FerryError(ErrorCode.Unavailable, `no reply on ${subject} within ${timeoutMs} ms`)));
          return;
        }
        outstanding++;
        if (outstanding < MAX_OUTSTANDING) timer = setTimeout(ask, Math.min(left, this.reaskAfterMs));
        call(this.nc, subject, spec, request, { ...opts, timeoutMs: left }).then(
          (r) => finish(() => resolve(r as z.infer<AgentApi[E]['reply']>)),
          (err: unknown) => {
            outstanding--;
            const e = FerryError.from(err);
            // Only a lost request or reply is asked again: an answer, even an error, is the agent's word.
            if (!(e.code === ErrorCode.Unavailable && /no reply on/.test(e.message))) return finish(() => reject(e));
            // No responders for a while: the agent is gone (its callers decide what that means), not reconnecting.
            if (/no responders|503/i.test(e.message)) {
              firstNoResponders ??= Date.now();
              if (Date.now() - firstNoResponders > NO_RESPONDERS_WINDOW_MS) return finish(() => reject(e));
            }
            // "no responders" comes back at once (the agent's endpoints are not known on this node yet): ask again shortly.
            if (!timer) timer = setTimeout(ask, Math.min(NO_RESPONDERS_PAUSE_MS, Math.max(0, deadline - Date.now())));
            else if (/no responders|503/i.test(e.message)) {
              clearTimeout(timer);
              timer = setTimeout(ask, NO_RESPONDERS_PAUSE_MS);
            }
          },
        );
      };
      ask();
    });
  }
}
