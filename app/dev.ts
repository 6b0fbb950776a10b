/**
 * `npm run dev`: the two-relays-one-Redis picture on one laptop.
 * Starts redis-server on a free loopback port and two relays (ports 8081 and 8082 by default) sharing it,
 * prints their URLs, prefixes and forwards their logs, and stops everything on Ctrl-C / SIGTERM.
 *
 * Environment: DEV_PORT_A (default 8081), DEV_PORT_B (default 8082), REDIS_SERVER (default redis-server on PATH).
 */
import { join, resolve } from 'node:path';
import { redisServerArgs, startRedisProcess, startRelayProcess } from './local-servers';
import { ProcessError, stopAllProcesses, type ManagedProcess, type StartProcessOptions } from './processes';

const REPO_ROOT = resolve(__dirname, '..');
const REDIS_READY_TIMEOUT_MS = 10_000;
const RELAY_READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

const relays: ManagedProcess[] = [];
let stopping = false;

main().catch((err: unknown) => {
  // When a child failed, its handler already explained why and is stopping the rest.
  if (!stopping) console.error(`dev: ${(err as Error).message}`);
  void shutdown(1);
});

async function main(): Promise<void> {
  const portA = readPort('DEV_PORT_A', 8081);
  const portB = readPort('DEV_PORT_B', 8082);
  if (portA === portB) fail('bad_port', `DEV_PORT_A and DEV_PORT_B are both ${portA}; give the two relays different ports.`);

  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  const redisBin = process.env.REDIS_SERVER || 'redis-server';
  const redis = await startRedisProcess({
    name: 'redis',
    command: redisBin,
    args: (port) => [...redisServerArgs(port), '--protected-mode', 'yes'],
    timeoutMs: REDIS_READY_TIMEOUT_MS,
    ...childOptions('redis'),
  }).catch((err: unknown) => {
    if (err instanceof ProcessError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      fail(
        'redis_missing',
        `redis-server not found (looked for "${redisBin}" on PATH). Install it (Debian/Ubuntu: sudo apt-get install redis-server; ` +
          'macOS: brew install redis) or set REDIS_SERVER to its path, then run npm run dev again.',
      );
    }
    throw err;
  });
  stopRestOnExit(redis.process);
  const redisUrl = `redis://127.0.0.1:${redis.port}`;

  await Promise.all(
    [
      { name: 'relay-a', port: portA },
      { name: 'relay-b', port: portB },
    ].map(async ({ name, port }) => {
      const relay = await startRelayProcess({
        name,
        command: process.execPath,
        args: ['--import', 'tsx', join(REPO_ROOT, 'service', 'main.ts')],
        timeoutMs: RELAY_READY_TIMEOUT_MS,
        ...childOptions(name, {
          PORT: String(port),
          HOST: '127.0.0.1',
          NODE_ENV: 'development',
          REDIS_URL: redisUrl,
          RELAY_INSTANCE_ID: name,
          // Short drain so Ctrl-C returns promptly; production keeps the default window.
          RELAY_DRAIN_WINDOW_MS: process.env.RELAY_DRAIN_WINDOW_MS || '500',
        }),
      });
      relays.push(relay.process);
      stopRestOnExit(relay.process);
    }),
  );

  console.log(
    [
      '',
      `dev: Redis      ${redisUrl}`,
      `dev: relay-a    page http://127.0.0.1:${portA}/    ws ws://127.0.0.1:${portA}/ws`,
      `dev: relay-b    page http://127.0.0.1:${portB}/    ws ws://127.0.0.1:${portB}/ws`,
      `dev: failover   http://127.0.0.1:${portB}/?urls=ws://127.0.0.1:${portB}/ws,ws://127.0.0.1:${portA}/ws`,
      'dev: open one page per relay, join the same room and send. Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
}

/** Output forwarded with a name prefix; each child in its own process group, so Ctrl-C reaches only this script. */
function childOptions(name: string, env: Record<string, string> = {}): StartProcessOptions {
  return {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    group: true,
    onLine: (line, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(`[${name}] ${line}\n`),
  };
}

function stopRestOnExit(child: ManagedProcess): void {
  void child.exit.then((info) => {
    if (stopping) return;
    console.error(`dev: ${child.name} exited (${info.signal ? `signal ${info.signal}` : `code ${String(info.code)}`}); stopping the rest.`);
    void shutdown(1);
  });
}

async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Relays first (they drain their clients and close Redis), then Redis and anything still starting.
  await Promise.all(relays.map((r) => r.stop(STOP_TIMEOUT_MS)));
  await stopAllProcesses(STOP_TIMEOUT_MS);
  process.exit(code);
}

function readPort(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail('bad_port', `${name}=${JSON.stringify(raw)} is not a port; use an integer 1-65535.`);
  return n;
}

function fail(code: string, message: string): never {
  throw Object.assign(new Error(message), { code });
}
