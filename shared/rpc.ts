// Request/reply over NATS with validation on both ends. A server never runs a handler on a
// message that fails its schema: it answers FERRY_BAD_MESSAGE naming the offending fields.
import { PermissionViolationError, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ErrorCode, FerryError } from './errors.ts';
import { replyEnvelope, type EndpointSpec } from './protocol.ts';

const AnyReply = replyEnvelope(z.unknown());

const enc = new TextEncoder();
const dec = new TextDecoder();

export function describeZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}

/** Parses and validates a payload; a failure is a FERRY_BAD_MESSAGE that names what is wrong. */
export function decode<S extends z.ZodType>(schema: S, data: Uint8Array, what: string): z.infer<S> {
  let raw: unknown;
  try {
    raw = data.length === 0 ? {} : JSON.parse(dec.decode(data));
  } catch {
    throw new FerryError(ErrorCode.BadMessage, `${what}: not valid JSON`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new FerryError(ErrorCode.BadMessage, `${what}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

export const encode = (value: unknown): Uint8Array => enc.encode(JSON.stringify(value));

/** Answers one request: validates it, runs the handler, replies with the envelope. */
export async function answer<Req extends z.ZodType, Res extends z.ZodType>(
  spec: EndpointSpec<Req, Res>,
  msg: Msg,
  handler: (req: z.infer<Req>) => Promise<z.infer<Res>> | z.infer<Res>,
): Promise<void> {
  try {
    const req = decode(spec.request, msg.data, `request on ${msg.subject}`);
    const result = await handler(req);
    msg.respond(encode({ ok: true, result }));
  } catch (err) {
    msg.respond(encode({ ok: false, error: FerryError.from(err).toWire() }));
  }
}

/** Sends a request and returns the validated result, or throws the server's FerryError. */
export async function call<Req extends z.ZodType, Res extends z.ZodType>(
  nc: NatsConnection,
  subject: string,
  spec: EndpointSpec<Req, Res>,
  request: z.input<Req>,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<z.infer<Res>> {
  let reply: Msg;
  try {
    reply = await abortable(nc.request(subject, encode(request), { timeout: opts.timeoutMs ?? spec.timeoutMs }), opts.signal, subject);
  } catch (err) {
    if (err instanceof FerryError) throw err;
    const violation = permissionViolation(err);
    if (violation) throw forbidden(violation);
    throw new FerryError(ErrorCode.Unavailable, `no reply on ${subject}: ${(err as Error).message}`, { cause: err });
  }
  const env = decode(AnyReply, reply.data, `reply on ${subject}`);
  if (!env.ok) throw FerryError.fromWire(env.error);
  const result = spec.reply.safeParse(env.result);
  if (!result.success) throw new FerryError(ErrorCode.BadMessage, `reply on ${subject}: ${describeZodError(result.error)}`);
  return result.data;
}

/** The permissions violation behind a NATS error (requests wrap it as their cause), if that is what it is. */
export function permissionViolation(err: unknown): PermissionViolationError | null {
  for (let e = err; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  return null;
}

/** NATS refused a subject to this identity: a permission error, never retried. */
export const forbidden = (err: PermissionViolationError): FerryError =>
  new FerryError(ErrorCode.Forbidden, `not permitted to ${err.operation === 'publish' ? 'publish to' : 'subscribe to'} ${err.subject}: this identity's role does not allow it`, {
    cause: err,
    details: { subject: err.subject, operation: err.operation },
  });

/** Stops waiting when the signal fires; the request itself is idempotent on the server side. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  const cancelled = () => new FerryError(ErrorCode.Cancelled, `${what}: cancelled`);
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
