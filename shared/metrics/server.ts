// A daemon's Prometheus endpoint: GET /metrics over node:http, for a scraper that shows the
// token (Authorization: Bearer). Nothing is anonymous: every other request is refused, a wrong
// or missing token with 401 before anything else is looked at.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import type { Registry } from 'prom-client';
import type { MetricsEndpoint } from '../config.ts';
import { ErrorCode, FerryError } from '../errors.ts';

/** Shorter tokens are refused: a scrape token is a password that a scraper sends in clear headers. */
export const MIN_TOKEN_LENGTH = 32;

/** The token in `file`: readable by its owner alone (like an nkey seed), one line, long enough. */
export function readScrapeToken(file: string): string {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FerryError(ErrorCode.BadConfig, `cannot read metrics token file ${file}: ${(err as Error).message}`);
  }
  if (mode & 0o077) throw new FerryError(ErrorCode.BadConfig, `metrics token file ${file} is readable by others (mode ${(mode & 0o777).toString(8)}): make it 0600`);
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new FerryError(ErrorCode.BadConfig, `metrics token file ${file} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces`);
  }
  return token;
}

/** Hashed first, so that the comparison takes the same time whatever the lengths. */
const digest = (s: string) => createHash('sha256').update(s).digest();

export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (\S+)$/i.exec(header ?? '');
  const shown = digest(m?.[1] ?? '');
  // Always compared, also without a header: a refusal takes as long as an acceptance.
  return timingSafeEqual(shown, digest(token)) && m !== null;
}

/** "10.0.0.1:9100" or "[::1]:9100" -> host and port. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) throw new FerryError(ErrorCode.BadConfig, `metrics listen "${listen}" is not ADDRESS:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}

export interface MetricsServer {
  /** Where it answers, e.g. http://10.78.0.11:7411/metrics (the actual port when 0 was asked for). */
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(registry: Registry, endpoint: MetricsEndpoint): Promise<MetricsServer> {
  const token = readScrapeToken(endpoint.tokenFile);
  const { host, port } = parseListen(endpoint.listen);
  const server = http.createServer((req, res) => {
    const refuse = (status: number, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(`${http.STATUS_CODES[status]}\n`);
    };
    if (!bearerMatches(req.headers.authorization, token)) return refuse(401, { 'www-authenticate': 'Bearer realm="ferry metrics"' });
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/metrics') return refuse(404);
    if (req.method !== 'GET') return refuse(405, { allow: 'GET' });
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(text);
      },
      () => refuse(500),
    );
  });
  server.listen(port, host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([e]) => {
      throw new FerryError(ErrorCode.BadConfig, `cannot listen for metrics on ${endpoint.listen}: ${(e as Error).message}`);
    }),
  ]);
  const bound = server.address() as { port: number };
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${bound.port}/metrics`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // A scraper keeps its connection open between scrapes.
        server.closeAllConnections();
      }),
  };
}
