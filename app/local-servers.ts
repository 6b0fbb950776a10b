/**
 * The two servers this repository runs on a laptop, in tests and in benchmarks — redis-server and the relay — started
 * on loopback ports and awaited on the signal each gives when it is ready, never on a timer.
 */
import { freePort } from './free-port';
import { jsonLine, ProcessError, startReady, type ManagedProcess, type StartProcessOptions } from './processes';

/** The `event` field of the relay's listening log record (service/main.ts). */
export const RELAY_LISTENING_EVENT = 'listening';

/**
 * The port of a relay's listening log record, undefined for any other record. Readiness rests on the record's fields,
 * never on its message text, so rewording the log line breaks no test, benchmark or `npm run dev`.
 */
export function listeningPort(record: Record<string, unknown>): number | undefined {
  return record.event === RELAY_LISTENING_EVENT && typeof record.port === 'number' ? record.port : undefined;
}

/** listeningPort() of one output line; undefined for a line that is not a JSON record. */
export function relayListeningPort(line: string): number | undefined {
  const record = jsonLine(line);
  return record === undefined ? undefined : listeningPort(record);
}

/** redis-server's start-up line: redis-server offers no structured readiness signal. */
export function redisReady(line: string): true | undefined {
  return line.includes('Ready to accept connections') ? true : undefined;
}

/** Arguments of a throwaway redis-server on 127.0.0.1:`port`: no persistence, working folder `dir` (default: the cwd). */
export function redisServerArgs(port: number, dir?: string): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(dir === undefined ? [] : ['--dir', dir])];
}

export interface RedisLaunch extends StartProcessOptions {
  /** redis-server's arguments for a port: the harness picks the port and may retry with another. */
  readonly args: (port: number) => string[];
  /** A fixed port, tried once. @default a free loopback port other than 6379, retried when another process takes it first */
  readonly port?: number;
  /** @default 'redis-server' (from PATH) */
  readonly command?: string;
  /** Rewrites the command line, e.g. to pin the server to CPUs with taskset. */
  readonly wrap?: (command: string, args: string[]) => [string, string[]];
  /** @default 'redis-server' */
  readonly name?: string;
  /** @default 15000 */
  readonly timeoutMs?: number;
}

const PORT_ATTEMPTS = 5;
/** The machine's own Redis lives there: never start on it or touch it. */
const MACHINE_REDIS_PORT = 6379;

/** Starts redis-server and resolves once it accepts connections. */
export async function startRedisProcess(launch: RedisLaunch): Promise<{ port: number; process: ManagedProcess }> {
  const { args, port: fixedPort, command = 'redis-server', wrap, name = 'redis-server', timeoutMs = 15_000, ...processOptions } = launch;
  let lastError: unknown = new ProcessError('no_free_port', `${name}: found no free loopback port other than ${MACHINE_REDIS_PORT}`);
  for (let attempt = 0; attempt < (fixedPort === undefined ? PORT_ATTEMPTS : 1); attempt++) {
    const port = fixedPort ?? (await freePort());
    if (fixedPort === undefined && port === MACHINE_REDIS_PORT) continue;
    const [cmd, cmdArgs] = wrap ? wrap(command, args(port)) : [command, args(port)];
    try {
      const { process } = await startReady(name, cmd, cmdArgs, { ...processOptions, ready: redisReady, timeoutMs, what: 'its ready line' });
      return { port, process };
    } catch (err) {
      lastError = err;
      // A missing binary fails on every port; anything else may be a port taken between the probe and the bind.
      if (err instanceof ProcessError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') break;
    }
  }
  throw lastError;
}

export interface RelayLaunch extends StartProcessOptions {
  readonly name: string;
  /** Usually process.execPath. */
  readonly command: string;
  readonly args: readonly string[];
  /** @default 15000 */
  readonly timeoutMs?: number;
}

/**
 * Starts a relay (or anything that logs the same listening record, like bench/floor-relay.js) and resolves with the
 * port from that record. The environment decides the port: PORT=0 lets the relay pick a free one.
 */
export async function startRelayProcess(launch: RelayLaunch): Promise<{ port: number; process: ManagedProcess }> {
  const { name, command, args, timeoutMs = 15_000, ...processOptions } = launch;
  const { process, ready } = await startReady(name, command, args, {
    ...processOptions,
    ready: relayListeningPort,
    timeoutMs,
    what: `its "${RELAY_LISTENING_EVENT}" log record`,
  });
  return { port: ready, process };
}
