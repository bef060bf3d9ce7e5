// Who may read the dashboard: whoever `ferry dashboard` gave a login link to. The coordinator
// only answers that request to an operator identity (NATS permissions, shared/permissions.ts),
// and the link travels on the operator's own reply inbox. A link's token is single use and
// short lived; redeeming it opens a browser session (an HttpOnly cookie). Tokens and session ids
// are 256 random bits, kept only as SHA-256 digests (a memory dump or a log line shows nothing
// usable), found by digest and compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const LOGIN_TOKEN_TTL_MS = 60_000;
/** The session cookie. `__Host-`: the browser keeps it only if Secure, for this host, Path=/ (no Domain). */
export const SESSION_COOKIE = '__Host-ferry_session';

/** Unredeemed links and sessions kept at most: the oldest go first, so a flood of logins cannot grow memory. */
const MAX_TOKENS = 64;
const MAX_SESSIONS = 256;

interface Grant {
  digest: Buffer;
  expiresAt: number;
}

const digestOf = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();
const newSecret = (): string => randomBytes(32).toString('base64url');
/** A secret's shape (43 base64url characters); anything else is refused before it is hashed. */
const SECRET_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** A set of secrets, each with an expiry, found by digest. */
class Secrets {
  readonly #byDigest = new Map<string, Grant>();
  constructor(private readonly max: number) {}

  add(secret: string, expiresAt: number): void {
    const digest = digestOf(secret);
    this.#byDigest.set(digest.toString('hex'), { digest, expiresAt });
    // Maps iterate in insertion order: the first is the oldest.
    while (this.#byDigest.size > this.max) this.#byDigest.delete(this.#byDigest.keys().next().value!);
  }

  /** The grant of a presented secret if it is known and not expired; `take` removes it either way. */
  find(presented: string | undefined, now: number, take: boolean): Grant | null {
    if (!presented || !SECRET_SHAPE.test(presented)) return null;
    const digest = digestOf(presented);
    const key = digest.toString('hex');
    const g = this.#byDigest.get(key);
    if (!g || !timingSafeEqual(g.digest, digest)) return null;
    if (take || g.expiresAt <= now) this.#byDigest.delete(key);
    return g.expiresAt > now ? g : null;
  }

  prune(now: number): void {
    for (const [k, g] of this.#byDigest) if (g.expiresAt <= now) this.#byDigest.delete(k);
  }

  get size(): number {
    return this.#byDigest.size;
  }
}

export interface AuthOptions {
  sessionTtlMs: number;
  tokenTtlMs?: number;
  now?: () => number;
}

export class DashboardAuth {
  readonly #tokens = new Secrets(MAX_TOKENS);
  readonly #sessions = new Secrets(MAX_SESSIONS);
  readonly #now: () => number;
  readonly #tokenTtlMs: number;

  constructor(private readonly o: AuthOptions) {
    this.#now = o.now ?? Date.now;
    this.#tokenTtlMs = o.tokenTtlMs ?? LOGIN_TOKEN_TTL_MS;
  }

  /** A new login token (what a login link carries). */
  issueToken(): { token: string; expiresAt: number } {
    const now = this.#now();
    this.#tokens.prune(now);
    const token = newSecret();
    const expiresAt = now + this.#tokenTtlMs;
    this.#tokens.add(token, expiresAt);
    return { token, expiresAt };
  }

  /** Redeems a token once: a new session, or null when the token is unknown, used or expired. */
  redeem(token: string | undefined): { id: string; expiresAt: number } | null {
    const now = this.#now();
    if (!this.#tokens.find(token, now, true)) return null;
    this.#sessions.prune(now);
    const id = newSecret();
    const expiresAt = now + this.o.sessionTtlMs;
    this.#sessions.add(id, expiresAt);
    return { id, expiresAt };
  }

  /** When a session id is valid, when it expires; null otherwise. */
  session(id: string | undefined): number | null {
    return this.#sessions.find(id, this.#now(), false)?.expiresAt ?? null;
  }

  /** Unredeemed tokens and open sessions (for tests and logs: counts only, never the secrets). */
  counts(): { tokens: number; sessions: number } {
    return { tokens: this.#tokens.size, sessions: this.#sessions.size };
  }
}

/** The session id in a Cookie header, if any. */
export function sessionFromCookie(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The Set-Cookie header of a new session: HttpOnly (no script reads it), Secure, SameSite=Strict. */
export const sessionCookie = (id: string, maxAgeMs: number): string =>
  `${SESSION_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeMs / 1000)}`;
