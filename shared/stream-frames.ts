// The headers of the frames on the agent-to-agent data stream (agent/transfer/frames.ts), one
// schema per kind `t`. The peer is an authenticated agent, but what it sends is still parsed
// like any network message: a bug or an older ferry on the far side must fail the stream with
// a clear error, not a NaN page count or a file named by an object. Field names are the wire's.
import { z } from 'zod';
import { MigrationId, PostcopyFigures } from './migration.ts';

/** Frame size limits, both ends: the JSON header, and the raw bytes after it. */
export const MAX_FRAME_HEADER = 64 * 1024;
export const MAX_FRAME_PAYLOAD = 64 * 1024 * 1024;

/** Error messages are cut to this at the sender (errorMessage), so a receiver never refuses a peer's error. */
export const MAX_ERROR_MESSAGE = 8 * 1024;

/** The kernel's PID_MAX_LIMIT on 64-bit: no pid is above it. */
const PID_MAX_LIMIT = 4 * 1024 * 1024;
/** A page run table entry (agent/transfer/pages.ts): runs are counted in the payload they sit in. */
const RUN_ENTRY_BYTES = 16;

// Arrays (exited pids) and error details need no bound of their own: the decoder refuses a
// header past MAX_FRAME_HEADER before it is parsed.
const count = z.int().nonnegative();
const bytes = z.int().nonnegative();
const pid = z.int().positive().max(PID_MAX_LIMIT);
/** Pre-copy rounds are 1-based. */
const round = z.int().positive();
const runCount = count.max(MAX_FRAME_PAYLOAD / RUN_ENTRY_BYTES);
const hex = (min: number, max = min) => z.string().regex(new RegExp(`^[0-9a-f]{${min},${max}}$`), `expected ${min === max ? min : `${min}-${max}`} lowercase hex digits`);

const frame = <T extends string, S extends z.ZodRawShape>(t: T, shape: S) => z.strictObject({ t: z.literal(t), ...shape });

export const StreamFrameHeader = z.discriminatedUnion('t', [
  // Handshake (agent/transfer/stream.ts, stream-server.ts).
  /** The source names its migration; `clear` asks for a clear data connection (absent: encrypted). */
  /** `channel` 'faults': post-copy's own connection for demand pages, beside the migration's stream. */
  frame('open', { migrationId: MigrationId, clear: z.boolean().optional(), channel: z.literal('faults').optional() }),
  frame('welcome', { migrationId: MigrationId, clear: z.boolean() }),
  /** A clear data connection proves it belongs to the authenticated one: the TLS exporter token (auth.ts). */
  frame('bind', { migrationId: MigrationId, token: hex(64), channel: z.literal('faults').optional() }),
  frame('bound', {}),
  /**
   * Either side gives up. `code` is a FerryError code when the receiver should fail with the
   * peer's own error (an unknown one, from a newer peer, reads as internal); `details` go along.
   */
  frame('error', { message: z.string().max(MAX_ERROR_MESSAGE), code: z.string().max(64).optional(), details: z.record(z.string(), z.unknown()).optional() }),

  // A live migration's session (agent/migration/precopy-*.ts): layouts between page rounds.
  frame('session', { kind: z.literal('precopy') }),
  /** Payload: the round's PrecopyLayout as JSON (shared/precopy.ts). */
  frame('layout', { round }),

  // The page stream (agent/transfer/pages.ts, where the payloads are described).
  /** `frozen`: the workload is frozen, this is the last delta (the receiver's switchover work starts). */
  frame('pages-round', { round, exited: z.array(pid), frozen: z.literal(true).optional() }),
  /** `raw` is at most a payload: the sender falls back to raw pages when lz4 does not pay. `sum`: XXH3-64 of them. */
  frame('pages', { pid, n: runCount, enc: z.enum(['raw', 'lz4']), raw: bytes.max(MAX_FRAME_PAYLOAD), sum: hex(1, 16).optional() }),
  frame('fork', { pid, n: runCount }),
  frame('pages-end', { round, frames: count, pages: count, zero: count }),
  frame('pages-done', {}),
  frame('pages-credit', { upTo: bytes }),
  frame('pages-ack', { round, pages: count, zero: count }),
  frame('pages-done-ack', {}),

  // Post-copy (agent/migration/postcopy-*.ts).
  /** In the last round: the pages of `pid` the destination gets only after the resume (payload: a run table). */
  frame('postcopy', { pid, n: runCount }),
  /** Destination -> source on the faults channel: the workload runs here now (the push may start). */
  frame('postcopy-resumed', {}),
  /** Destination -> source on the faults channel: the workload waits for this page. */
  frame('fault', { pid, addr: hex(1, 16), pages: count.min(1).max(256) }),
  /** Source -> destination: `pages` pages from addr (raw), the one asked for first. */
  frame('fault-pages', { pid, addr: hex(1, 16), pages: count.min(1).max(256) }),
  /** Destination -> source: every page arrived; what post-copy took. */
  frame('postcopy-done', { figures: PostcopyFigures }),

  // An image directory (agent/migration/image-transfer.ts): per file, `file`, `data`..., `eof`.
  /** A plain file name (NAME_MAX); the receiver also refuses paths and dot files. */
  frame('file', { name: z.string().min(1).max(255), size: bytes }),
  frame('data', {}),
  frame('eof', { sha256: hex(64) }),
  frame('done', { files: count, bytes }),
  frame('ack', { bytes }),
]);
export type StreamFrameHeader = z.infer<typeof StreamFrameHeader>;

export type FrameKind = StreamFrameHeader['t'];
export type FrameHeader<K extends FrameKind> = Extract<StreamFrameHeader, { t: K }>;

export const FRAME_KINDS: ReadonlySet<string> = new Set(StreamFrameHeader.options.map((o) => o.shape.t.value));

/** A message that fits an error frame. */
export const errorMessage = (message: string): string => (message.length <= MAX_ERROR_MESSAGE ? message : `${message.slice(0, MAX_ERROR_MESSAGE - 1)}…`);
