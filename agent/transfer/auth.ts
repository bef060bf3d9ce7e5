// Mutual authentication of a data stream with the migration's secret: each side proves it holds
// the secret by an HMAC over the other side's fresh nonce, so a recorded handshake cannot be
// replayed and neither side streams memory to (or accepts it from) a stranger.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const newNonce = (): string => randomBytes(16).toString('hex');

export function proof(secret: string, migrationId: string, role: 'sender' | 'receiver', nonce: string): string {
  return createHmac('sha256', secret).update(`ferry-data-stream/v1\n${migrationId}\n${role}\n${nonce}`).digest('hex');
}

export function verify(expected: string, got: unknown): boolean {
  if (typeof got !== 'string' || got.length !== expected.length) return false;
  return timingSafeEqual(Buffer.from(expected), Buffer.from(got));
}
