// The error tree shared by every ferry process. An error that crosses a process boundary
// travels as its wire form (code, message, retryable, details) and is rebuilt on the far side,
// so callers branch on `code`, never on message text.

export const ErrorCode = {
  /** A message from the network did not match its schema. */
  BadMessage: 'FERRY_BAD_MESSAGE',
  /** The request is well-formed but asks for something invalid (unknown host, bad option). */
  InvalidRequest: 'FERRY_INVALID_REQUEST',
  /** Configuration file or flags are wrong. */
  BadConfig: 'FERRY_BAD_CONFIG',
  /** Something named in a request does not exist (workload, host, migration, pid). */
  NotFound: 'FERRY_NOT_FOUND',
  /** The workload holds a resource the engine cannot carry (seccomp, io_uring, TCP before networking...). */
  Unsupported: 'FERRY_UNSUPPORTED',
  /** The destination cannot run what the source runs (kernel, XSAVE, features, memory). */
  Incompatible: 'FERRY_INCOMPATIBLE',
  /** A libc call failed; details carry the call and errno. */
  Syscall: 'FERRY_SYSCALL',
  /** A checkpoint image is malformed, truncated or fails its checksums. */
  BadImage: 'FERRY_BAD_IMAGE',
  /** An operation ran out of time. */
  Timeout: 'FERRY_TIMEOUT',
  /** The operation was cancelled by a user or by rollback. */
  Cancelled: 'FERRY_CANCELLED',
  /** A peer (agent, coordinator, NATS) could not be reached. */
  Unavailable: 'FERRY_UNAVAILABLE',
  /** NATS refused this identity the subject (shared/permissions.ts): acting outside its role. */
  Forbidden: 'FERRY_FORBIDDEN',
  /** A compare-and-swap lost against a concurrent writer. */
  Conflict: 'FERRY_CONFLICT',
  /** The lab (local multi-host test bed) is missing or broken. */
  Lab: 'FERRY_LAB',
  /**
   * Verification before the commit point found the restored tree differs from its image
   * (details: pid, hostPid, resource, field, expected, actual). The migration rolls back.
   */
  VerifyMismatch: 'FERRY_VERIFY_MISMATCH',
  /** A workload ended outside ferry's control (killed, stopped by someone else) and left no exit status (`ferry launch`). */
  WorkloadEnded: 'FERRY_WORKLOAD_ENDED',
  /** A bug: an invariant of ferry's own did not hold. */
  Internal: 'FERRY_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const retryableByDefault: ReadonlySet<ErrorCode> = new Set([ErrorCode.Timeout, ErrorCode.Unavailable, ErrorCode.Conflict]);

export interface ErrorWire {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
}

export class FerryError extends Error {
  override name = 'FerryError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryable = opts.retryable ?? retryableByDefault.has(code);
    this.details = opts.details;
  }

  toWire(): ErrorWire {
    return { code: this.code, message: this.message, retryable: this.retryable, ...(this.details ? { details: this.details } : {}) };
  }

  static fromWire(w: ErrorWire): FerryError {
    return new FerryError(w.code, w.message, { retryable: w.retryable, ...(w.details ? { details: w.details } : {}) });
  }

  /**
   * Any thrown value as a FerryError; foreign errors become Internal and keep their message, but
   * NATS's own signs of a cluster in flux (a node restarting: JetStream not ready yet, no
   * responders, a timeout, a connection being replaced) become Unavailable, retryable.
   */
  static from(err: unknown): FerryError {
    if (err instanceof FerryError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (TRANSIENT_NATS.test(message)) return new FerryError(ErrorCode.Unavailable, `NATS: ${message}`, { cause: err });
    return new FerryError(ErrorCode.Internal, message, { cause: err });
  }
}

/** Messages of nats.js and nats-server errors that pass once the cluster settles. */
const TRANSIENT_NATS = /jetstream is not enabled|jetstream not in cluster|jetstream system temporarily unavailable|no responders|^timeout$|TIMEOUT|CONNECTION_CLOSED|CONNECTION_DRAINING|disconnect/i;

export const isFerryError = (err: unknown, code?: ErrorCode): err is FerryError =>
  err instanceof FerryError && (code === undefined || err.code === code);
