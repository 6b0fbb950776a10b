import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';
import { REDACTED } from './redact';

/**
 * Error properties that carry what a client sent: node's HTTP parser errors hold the raw request bytes (request
 * line with its `?token=`, cookies) in `rawPacket`. They are dropped from every logged error.
 */
const CLIENT_BYTES = ['rawPacket', 'headers', 'url', 'input'] as const;

/** Keys that hold credentials wherever they appear in a log line; a second line of defence behind not logging them. */
const SECRET_PATHS = [
  'token',
  '*.token',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'cookie',
  '*.cookie',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
];

/** pino's error serializer without the client's bytes. */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  for (const key of CLIENT_BYTES) delete out[key];
  return out;
}

/** The process's one logger: JSON lines on stdout, written synchronously so nothing is lost on exit. */
export function createLogger(level: LogLevel, base: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { ...base },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError },
      redact: { paths: SECRET_PATHS, censor: REDACTED },
    },
    pino.destination({ dest: 1, sync: true }),
  );
}

export type { Logger };
