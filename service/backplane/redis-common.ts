/**
 * What the standalone and cluster Redis backplanes share: URL parsing, connection options
 * (TLS, AUTH, reconnect backoff) and state reporting that logs once per state change.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { inspect } from 'node:util';
import type { Logger } from 'pino';
import { redactUrl as redactSecretsInUrl } from '../redact';
import { READ_SCRIPT, parseReadReply, runScript, type HistoryRead, type SendCommand } from './history';
import { BackplaneUnavailableError, type BackplaneState, type BackplaneStatus } from './types';

/**
 * Longest pause between reconnect attempts; short because a relay without its backplane is degraded. At 2 s a
 * Redis back after a 3 s outage could wait ~2 s for the next attempt, past the 2 s resume bound we promise.
 */
export const MAX_RECONNECT_DELAY_MS = 1000;
/** Bound on each publish so a hung Redis cannot pile up promises. */
export const PUBLISH_TIMEOUT_MS = 2000;
/** Bound on subscribe/unsubscribe/ROLE round trips. */
export const COMMAND_TIMEOUT_MS = 2000;
export const CONNECT_TIMEOUT_MS = 3000;

/** Thrown by the constructors for a URL or CA file that can never work; the relay exits on it. */
export class RedisConfigError extends Error {
  readonly code = 'invalid_redis_config';
  constructor(message: string) {
    super(message);
    this.name = 'RedisConfigError';
  }
}

/** A parsed REDIS_URL; `password` is never logged. */
export interface RedisEndpoint {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly username?: string;
  readonly password?: string;
}

/** Connection settings common to every socket a backplane opens. */
export interface RedisConnectionSettings {
  readonly endpoint: RedisEndpoint;
  /** PEM bytes of the CA that signs the server certificate (TLS only). */
  readonly ca?: Buffer;
}

/**
 * Validates the URL, the AUTH token and the CA file once, at construction, so a bad setting fails the
 * start-up with a message naming the variable instead of looping on reconnects.
 */
export function resolveConnectionSettings(url: string, authToken?: string, tlsCaFile?: string): RedisConnectionSettings {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RedisConfigError(
      `REDIS_URL is not a valid URL (got "${redactUrl(url)}"); use redis://host:port or rediss://host:port`,
    );
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new RedisConfigError(
      `REDIS_URL must start with redis:// or rediss:// (got "${redactUrl(url)}")`,
    );
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') {
    throw new RedisConfigError(`REDIS_URL has no host (got "${redactUrl(url)}"); use redis://host:port`);
  }
  const port = parsed.port === '' ? 6379 : Number(parsed.port);
  const tls = parsed.protocol === 'rediss:';
  const urlPassword = parsed.password === '' ? undefined : decodeURIComponent(parsed.password);
  const username = parsed.username === '' ? undefined : decodeURIComponent(parsed.username);
  // The URL's own password wins: an operator who wrote one meant it.
  const password = urlPassword ?? (authToken === undefined || authToken === '' ? undefined : authToken);
  let ca: Buffer | undefined;
  if (tlsCaFile !== undefined && tlsCaFile !== '') {
    if (!tls) {
      throw new RedisConfigError(
        `REDIS_TLS_CA_FILE is set ("${tlsCaFile}") but REDIS_URL uses redis://; use rediss:// for TLS or unset REDIS_TLS_CA_FILE`,
      );
    }
    try {
      ca = readFileSync(tlsCaFile);
    } catch (err) {
      throw new RedisConfigError(
        `REDIS_TLS_CA_FILE "${tlsCaFile}" cannot be read (${describeError(err)}); point it at a PEM CA certificate`,
      );
    }
  }
  return { endpoint: { host, port, tls, username, password }, ca };
}

/** Socket options for node-redis: TLS verification keeps the configured host's name even after a failover redirect. */
export function socketOptions(settings: RedisConnectionSettings, host: string, port: number) {
  return { host, port, ...socketDefaults(settings) };
}

/** socketOptions without the address, for connections whose address node-redis picks (cluster nodes). */
export function socketDefaults(settings: RedisConnectionSettings) {
  const base = { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: backoffWithJitter };
  if (!settings.endpoint.tls) return { ...base, tls: false as const };
  const configured = settings.endpoint.host;
  return {
    ...base,
    tls: true as const,
    ...(settings.ca === undefined ? {} : { ca: settings.ca }),
    // SNI must be a DNS name (RFC 6066); for IP addresses the certificate is checked against the IP itself.
    ...(isIP(configured) === 0 ? { servername: configured } : {}),
  };
}

/** Exponential backoff from 100 ms, capped, with jitter so many relays do not reconnect in lockstep. */
export function backoffWithJitter(retries: number): number {
  const ceiling = Math.min(MAX_RECONNECT_DELAY_MS, 100 * 2 ** Math.min(retries, 10));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** A URL safe to log: the password replaced by `***`. */
export function redactUrl(url: string): string {
  return redactSecretsInUrl(url);
}

/** One line for logs and /healthz; node-redis wraps dual-stack connect failures in an AggregateError with no message. */
export function describeError(err: unknown): string {
  // Duck-typed, not instanceof: errors from another realm (vm contexts, test runners) are still errors.
  if (typeof err !== 'object' || err === null) return String(err);
  const { message, name, code, errors } = err as { message?: unknown; name?: unknown; code?: unknown; errors?: unknown };
  const text = typeof message === 'string' && message !== '' ? message : '';
  if (text === '' && Array.isArray(errors) && errors.length > 0) return errors.map(describeError).join('; ');
  const base = text !== '' ? text : typeof name === 'string' ? name : inspect(err, { breakLength: Infinity });
  return typeof code === 'string' && !base.includes(code) ? `${base} (${code})` : base;
}

/** Resolves or rejects like `promise`, but rejects with `onTimeout()` after `ms`; the timer never outlives the race. */
export function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Holds the backplane state, notifies listeners and logs transitions. Errors are logged at most once per
 * state, so a Redis that stays away for an hour produces one warning, not one per retry.
 */
export class StateReporter {
  #state: BackplaneState = 'connecting';
  #lastError: string | undefined;
  #errorLogged = false;
  readonly #listeners: Array<(status: BackplaneStatus) => void> = [];

  constructor(
    private readonly kind: BackplaneStatus['kind'],
    private readonly logger: Logger,
  ) {}

  get state(): BackplaneState {
    return this.#state;
  }

  status(): BackplaneStatus {
    return this.#lastError === undefined
      ? { kind: this.kind, state: this.#state }
      : { kind: this.kind, state: this.#state, lastError: this.#lastError };
  }

  onChange(listener: (status: BackplaneStatus) => void): void {
    this.#listeners.push(listener);
  }

  noteError(err: unknown): void {
    if (this.#state === 'closed') return;
    this.#lastError = describeError(err);
    // While ready, the transition to down that follows logs this error.
    if (this.#errorLogged || this.#state === 'ready') return;
    this.#errorLogged = true;
    this.logger.warn({ backplane: this.kind, state: this.#state, error: this.#lastError }, 'redis backplane error');
  }

  set(next: BackplaneState): void {
    if (next === this.#state || this.#state === 'closed') return;
    const previous = this.#state;
    this.#state = next;
    this.#errorLogged = false;
    if (next === 'ready') {
      this.#lastError = undefined;
      this.logger.info({ backplane: this.kind, previous }, 'redis backplane ready');
    } else if (next === 'down') {
      this.#errorLogged = this.#lastError !== undefined;
      this.logger.warn({ backplane: this.kind, previous, error: this.#lastError }, 'redis backplane down');
    } else {
      this.logger.info({ backplane: this.kind, previous }, `redis backplane ${next}`);
    }
    const status = this.status();
    for (const listener of this.#listeners) {
      try {
        listener(status);
      } catch (err) {
        this.logger.error({ err }, 'backplane state listener threw');
      }
    }
  }
}

/** Runs the read script for a joining client's room; errors say which room and store. */
export async function readWithScript(send: SendCommand, store: string, room: string, keys: readonly string[], args: string[]): Promise<HistoryRead> {
  try {
    const reply = await withTimeout(runScript(send, READ_SCRIPT, keys, args), COMMAND_TIMEOUT_MS,
      () => new Error(`no reply within ${COMMAND_TIMEOUT_MS} ms`));
    return parseReadReply(reply);
  } catch (err) {
    throw new BackplaneUnavailableError(`reading the history of room ${JSON.stringify(room)} from ${store} failed (${describeError(err)}); retry shortly`);
  }
}
