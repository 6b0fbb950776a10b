import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

/** The process's one logger: JSON lines on stdout, written synchronously so nothing is lost on exit. */
export function createLogger(level: LogLevel, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...base }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
}

export type { Logger };
