/**
 * `npm run dev`: the two-relays-one-Redis picture on one laptop.
 * Starts redis-server on a free loopback port and two relays (ports 8081 and 8082 by default) sharing it,
 * prints their URLs, prefixes and forwards their logs, and stops everything on Ctrl-C / SIGTERM.
 *
 * Environment: DEV_PORT_A (default 8081), DEV_PORT_B (default 8082), REDIS_SERVER (default redis-server on PATH).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const REPO_ROOT = resolve(__dirname, '..');
const REDIS_READY_TIMEOUT_MS = 10_000;
const RELAY_READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  exitInfo: string | null;
}

const children: Child[] = [];
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

  const redisPort = await freePort();
  const redisBin = process.env.REDIS_SERVER || 'redis-server';
  const redis = startChild('redis', redisBin, [
    '--port', String(redisPort),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'yes',
  ]);
  await waitForLine(redis, (line) => line.includes('Ready to accept connections'), REDIS_READY_TIMEOUT_MS);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;

  const relays = [
    { name: 'relay-a', port: portA },
    { name: 'relay-b', port: portB },
  ].map(({ name, port }) =>
    startChild(name, process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'service', 'main.ts')], {
      PORT: String(port),
      HOST: '127.0.0.1',
      NODE_ENV: 'development',
      REDIS_URL: redisUrl,
      RELAY_INSTANCE_ID: name,
      // Short drain so Ctrl-C returns promptly; production keeps the default window.
      RELAY_DRAIN_WINDOW_MS: process.env.RELAY_DRAIN_WINDOW_MS || '500',
    }),
  );
  await Promise.all(relays.map((r) => waitForLine(r, (line) => line.includes('relay listening'), RELAY_READY_TIMEOUT_MS)));

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

function startChild(name: string, command: string, args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(command, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group: Ctrl-C reaches only this script, which then stops relays before Redis (one signal each).
    detached: true,
  });
  let settle: () => void = () => undefined;
  const child: Child = { name, proc, exitInfo: null, exited: new Promise<void>((r) => (settle = r)) };
  children.push(child);
  forwardLines(proc.stdout, name, process.stdout);
  forwardLines(proc.stderr, name, process.stderr);
  proc.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' && name === 'redis') {
      console.error(
        `dev: redis-server not found (looked for "${command}" on PATH). Install it (Debian/Ubuntu: sudo apt-get install redis-server; ` +
          'macOS: brew install redis) or set REDIS_SERVER to its path, then run npm run dev again.',
      );
    } else {
      console.error(`dev: could not start ${name} (${command}): ${err.message}`);
    }
    child.exitInfo = `failed to start: ${err.code ?? err.message}`;
    settle();
    void shutdown(1);
  });
  proc.on('exit', (code, signal) => {
    child.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
    settle();
    if (!stopping) {
      console.error(`dev: ${name} exited (${child.exitInfo}); stopping the rest.`);
      void shutdown(1);
    }
  });
  return child;
}

function forwardLines(stream: NodeJS.ReadableStream | null, prefix: string, out: NodeJS.WritableStream): void {
  if (!stream) return;
  createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line: string) => out.write(`[${prefix}] ${line}\n`));
}

function waitForLine(child: Child, pred: (line: string) => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let buf = '';
    const onData = (chunk: Buffer | string): void => {
      buf += chunk.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      if (lines.some(pred)) done();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${child.name} did not report ready within ${timeoutMs} ms; see its log lines above.`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.proc.stdout?.off('data', onData);
      child.proc.stderr?.off('data', onData);
    };
    const done = (): void => {
      cleanup();
      resolvePromise();
    };
    child.proc.stdout?.on('data', onData);
    child.proc.stderr?.on('data', onData);
    void child.exited.then(() => {
      cleanup();
      reject(new Error(`${child.name} exited (${child.exitInfo ?? 'unknown'}) before it was ready.`));
    });
  });
}

async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Relays first (they drain their clients and close Redis), then Redis.
  const relays = children.filter((c) => c.name !== 'redis');
  await Promise.all(relays.map(stopChild));
  await Promise.all(children.filter((c) => c.name === 'redis').map(stopChild));
  process.exit(code);
}

async function stopChild(child: Child): Promise<void> {
  if (child.exitInfo !== null || child.proc.pid === undefined) return;
  child.proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const forced = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_TIMEOUT_MS)));
  const timedOut = await Promise.race([child.exited.then(() => false), forced]);
  clearTimeout(timer);
  if (timedOut) {
    console.error(`dev: ${child.name} still running ${STOP_TIMEOUT_MS} ms after SIGTERM; killing it.`);
    child.proc.kill('SIGKILL');
    await child.exited;
  }
}

function readPort(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail('bad_port', `${name}=${JSON.stringify(raw)} is not a port; use an integer 1-65535.`);
  return n;
}

function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePromise(port));
    });
  });
}

function fail(code: string, message: string): never {
  throw Object.assign(new Error(message), { code });
}
