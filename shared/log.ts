// The daemons' logger: JSON lines on stderr (pino). Libraries below the daemons publish on
// diagnostics_channel instead and never import this.
import { pino } from 'pino';

export const createLogger = (name: string, bindings: Record<string, unknown> = {}) =>
  pino({ name, level: process.env.FERRY_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...bindings } }, pino.destination(2));
export type Logger = ReturnType<typeof createLogger>;
