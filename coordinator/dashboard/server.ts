// The dashboard's HTTPS server: read-only (GET and HEAD only), every response but a login behind
// a session (401 otherwise), nothing fetched from elsewhere (the page, its script and its styles
// are served here, under a strict Content-Security-Policy).
//
//   GET /login?token=T   redeem a one-time token from `ferry dashboard`: session cookie, 303 to /
//   GET /                the page; /app.js, /app.css its script and styles
//   GET /api/state       DashboardState (shared/dashboard.ts)
//   GET /api/migrations/ID  one MigrationView
//   GET /api/events      Server-Sent Events: `state` when it changed, `migration` per migration event
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { MigrationId } from '../../shared/migration.ts';
import type { MigrationEventWire } from '../../shared/migration-events.ts';
import { DashboardAuth, sessionCookie, sessionFromCookie } from './auth.ts';
import { bundlePage } from './bundle.ts';
import { DashboardStateBuilder, type DashboardSources } from './state.ts';

const PAGE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page').replace(`${path.sep}dist${path.sep}`, path.sep);

/** How often the state is gathered again while a page is open (only then). */
const STATE_EVERY_MS = 1_000;
/** An SSE comment this often keeps proxies and the browser from taking the stream for dead. */
const KEEPALIVE_MS = 15_000;

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'strict-transport-security': 'max-age=31536000',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

export interface DashboardServerOptions {
  listen: { host: string; port: number };
  /** Where browsers reach it (login links name it), without a trailing slash. */
  publicUrl: string;
  tls: { cert: string; key: string };
  sessionTtlMs: number;
  tokenTtlMs?: number;
  sources: DashboardSources;
  log: Logger;
}

interface Stream {
  res: ServerResponse;
  session: string;
}

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

const asset = (type: string, text: string): Asset => ({ type, body: Buffer.from(text), gzip: gzipSync(text) });

export class DashboardServer {
  readonly auth: DashboardAuth;
  readonly #builder: DashboardStateBuilder;
  readonly #streams = new Set<Stream>();
  readonly #assets = new Map<string, Promise<Asset>>();
  #server: Server | null = null;
  #timer: NodeJS.Timeout | null = null;
  #lastState = '';
  /** The last state without its time: what tells whether anything changed. */
  #lastContent = '';
  #building: Promise<string> | null = null;

  constructor(private readonly o: DashboardServerOptions) {
    this.auth = new DashboardAuth({ sessionTtlMs: o.sessionTtlMs, tokenTtlMs: o.tokenTtlMs });
    this.#builder = new DashboardStateBuilder(o.sources);
    const file = (name: string) => readFileSync(path.join(PAGE_DIR, name), 'utf8');
    this.#assets.set('/', Promise.resolve(asset('text/html; charset=utf-8', file('index.html'))));
    this.#assets.set('/app.css', Promise.resolve(asset('text/css; charset=utf-8', file('app.css'))));
  }

  /** A static file; the script is bundled when a browser first asks for it (a coordinator whose dashboard nobody opens never pays for it). */
  #asset(pathname: string): Promise<Asset> | undefined {
    if (pathname === '/app.js' && !this.#assets.has(pathname)) {
      const js = bundlePage().then((text) => asset('text/javascript; charset=utf-8', text));
      this.#assets.set(pathname, js);
      // Asked again next time, not remembered as failed.
      js.catch((err: Error) => {
        this.o.log.error({ err: err.message }, 'dashboard: cannot bundle the page');
        this.#assets.delete(pathname);
      });
    }
    return this.#assets.get(pathname === '/index.html' ? '/' : pathname);
  }

  async start(): Promise<void> {
    const server = createServer({ cert: readFileSync(this.o.tls.cert), key: readFileSync(this.o.tls.key), minVersion: 'TLSv1.2' }, (req, res) => {
      void this.#handle(req, res).catch((err: Error) => {
        this.o.log.error({ err: err.message, path: req.url?.split('?')[0] }, 'dashboard request failed');
        if (!res.headersSent) this.#text(res, 500, 'internal error');
        else res.end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new FerryError(ErrorCode.BadConfig, `dashboard: cannot listen on ${this.o.listen.host}:${this.o.listen.port}: ${err.message}`)));
      server.listen(this.o.listen.port, this.o.listen.host, () => resolve());
    });
    this.#server = server;
    this.o.log.info({ url: this.o.publicUrl }, 'dashboard listening');
  }

  /** A one-time login link (what `ferry dashboard` prints). */
  login(): { url: string; dashboardUrl: string; expiresAt: number } {
    const { token, expiresAt } = this.auth.issueToken();
    return { url: `${this.o.publicUrl}/login?token=${token}`, dashboardUrl: `${this.o.publicUrl}/`, expiresAt };
  }

  /** A migration event as the coordinator published it: to every open page at once. */
  migrationEvent(e: MigrationEventWire): void {
    this.#broadcast('migration', JSON.stringify(e));
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    for (const s of this.#streams) s.res.end();
    this.#streams.clear();
    const server = this.#server;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://dashboard.invalid');
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.#text(res, 405, 'the dashboard is read-only', { allow: 'GET, HEAD' });
    if (url.pathname === '/login') return this.#login(url, res);
    const session = sessionFromCookie(req.headers.cookie);
    if (this.auth.session(session) === null) return this.#text(res, 401, 'not logged in: open the link `ferry dashboard` prints (it is good for one use, for a minute)');
    if (url.pathname === '/api/events') return this.#events(res, session!);
    if (url.pathname === '/api/state') return this.#json(res, await this.#state());
    const m = /^\/api\/migrations\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const id = MigrationId.safeParse(decodeURIComponent(m[1]!));
      if (!id.success) return this.#text(res, 400, 'not a migration id');
      const view = await this.o.sources.migration(id.data).catch((err: unknown) => FerryError.from(err));
      if (view instanceof FerryError) return this.#text(res, view.code === ErrorCode.NotFound ? 404 : 503, view.message);
      return this.#json(res, JSON.stringify(view));
    }
    const a = this.#asset(url.pathname);
    if (!a) return this.#text(res, 404, 'not found');
    const { type, body, gzip } = await a;
    const zipped = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': type, ...(zipped ? { 'content-encoding': 'gzip' } : {}), vary: 'accept-encoding' });
    res.end(req.method === 'HEAD' ? undefined : zipped ? gzip : body);
  }

  #login(url: URL, res: ServerResponse): void {
    const s = this.auth.redeem(url.searchParams.get('token') ?? undefined);
    // The token is never logged: only whether a login worked.
    if (!s) {
      this.o.log.warn('dashboard: a login link was refused (unknown, used or expired)');
      return this.#text(res, 401, 'this login link is unknown, used or expired: run `ferry dashboard` for a new one');
    }
    this.o.log.info('dashboard: a browser logged in');
    res.writeHead(303, { ...SECURITY_HEADERS, location: '/', 'set-cookie': sessionCookie(s.id, s.expiresAt - Date.now()) });
    res.end();
  }

  #events(res: ServerResponse, session: string): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    const stream = { res, session };
    this.#streams.add(stream);
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    res.on('close', () => {
      clearInterval(keepalive);
      this.#streams.delete(stream);
      if (this.#streams.size === 0 && this.#timer) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    });
    // The newcomer gets the whole state at once; everyone gets it again when it changes.
    void this.#state().then((s) => this.#send(stream, 'state', s), (err: Error) => this.o.log.warn({ err: err.message }, 'dashboard: state not available'));
    this.#timer ??= setInterval(() => void this.#refresh(), STATE_EVERY_MS);
  }

  async #refresh(): Promise<void> {
    const before = this.#lastState;
    const s = await this.#state().catch((err: Error) => {
      this.o.log.warn({ err: err.message }, 'dashboard: state not available');
      return before;
    });
    if (s !== before) this.#broadcast('state', s);
  }

  /** The state as JSON, gathered once for everyone asking at the same time. */
  #state(): Promise<string> {
    this.#building ??= this.#builder
      .build()
      .then((s) => {
        // `at` changes every time: only a change of anything else is news.
        const content = JSON.stringify({ ...s, at: null });
        if (content !== this.#lastContent) {
          this.#lastContent = content;
          this.#lastState = JSON.stringify(s);
        }
        return this.#lastState;
      })
      .finally(() => (this.#building = null));
    return this.#building;
  }

  #broadcast(event: string, data: string): void {
    for (const s of this.#streams) this.#send(s, event, data);
  }

  #send(s: Stream, event: string, data: string): void {
    // A session that expired ends its stream: the page says so (EventSource gets a 401 on reconnecting).
    if (this.auth.session(s.session) === null) return void s.res.end();
    s.res.write(`event: ${event}\ndata: ${data}\n\n`);
  }

  #json(res: ServerResponse, body: string): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8' });
    res.end(body);
  }

  #text(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', ...extra });
    res.end(`${body}\n`);
  }
}
