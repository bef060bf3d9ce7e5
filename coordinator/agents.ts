// The coordinator's client for agent endpoints: typed by shared/protocol, nothing else.
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { agentApi, type AgentApi, type EndpointSpec } from '../shared/protocol.ts';
import { call } from '../shared/rpc.ts';
import { subjects } from '../shared/subjects.ts';

export class AgentClient {
  constructor(private readonly nc: NatsConnection) {}

  call<E extends keyof AgentApi>(
    host: string,
    endpoint: E,
    request: z.input<AgentApi[E]['request']>,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<z.infer<AgentApi[E]['reply']>> {
    const spec = agentApi[endpoint] as EndpointSpec<z.ZodType, z.ZodType>;
    return call(this.nc, subjects.agent(host, endpoint), spec, request, opts) as Promise<z.infer<AgentApi[E]['reply']>>;
  }
}
