/**
 * Real redis-server processes for integration tests: one server (plain or TLS-only, optionally with a password),
 * or a Redis Cluster of N masters. Every server runs on free loopback ports in its own temporary folder and is
 * tracked so `stopAllRedis()` can clean up after a failed test.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeTlsCerts } from './certs';

const run = promisify(execFile);
const START_TIMEOUT_MS = 15_000;
const CLUSTER_TIMEOUT_MS = 30_000;
const POLL_MS = 100;

export const REDIS_MISSING_MESSAGE =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server redis-tools) and re-run the tests.';

/** Throws the install hint when redis-server (or redis-cli) is missing from `env.PATH`. */
export function requireRedisServer(env: NodeJS.ProcessEnv = process.env): void {
  for (const binary of ['redis-server', 'redis-cli']) {
    const probe = spawnSync(binary, ['--version'], { stdio: 'ignore', env });
    if (probe.error !== undefined) throw new Error(REDIS_MISSING_MESSAGE);
  }
}

export interface StartRedisOptions {
  /** TLS-only server (no plaintext port) with a CA and certificate generated for 127.0.0.1. */
  tls?: boolean;
  /** requirepass; the returned url carries it. */
  password?: string;
  port?: number;
  /** Extra redis-server arguments. */
  args?: string[];
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** redis:// or rediss://, with the password when one is set. */
  readonly url: string;
  /** CA that signed the server certificate (TLS servers only). */
  readonly caFile?: string;
  readonly dir: string;
  /** Everything the server wrote to stdout/stderr, for failure messages. */
  readonly logs: () => string;
  /** Kills the process (SIGKILL by default) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the process hangs with its connections open, like a wedged Redis. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Starts the server again on the same port with the same arguments and waits until it accepts connections. */
  restart(): Promise<void>;
  /** Runs redis-cli against this server (TLS and password aware) and returns its stdout. */
  cli(...args: string[]): Promise<string>;
  /** Kills the server and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

export interface RedisCluster {
  readonly nodes: RedisServer[];
  /** Seed node URL. */
  readonly url: string;
  stop(): Promise<void>;
}

const live = new Set<{ stop(): Promise<void> }>();

/** Stops every server and cluster still running; for afterAll. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...live].map((server) => server.stop()));
}

/** A port the OS just handed out on 127.0.0.1 (closed again, so it is free unless someone races us). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not read the port of a probe server'));
      });
    });
  });
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  requireRedisServer();
  const dir = await mkdtemp(join(tmpdir(), 'relay-redis-'));
  const port = opts.port ?? (await freePort());
  const host = '127.0.0.1';
  const args = ['--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir];
  let caFile: string | undefined;
  if (opts.tls === true) {
    const certs = await makeTlsCerts(dir);
    caFile = certs.caFile;
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', certs.certFile, '--tls-key-file', certs.keyFile,
      '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no');
  } else {
    args.push('--port', String(port));
  }
  if (opts.password !== undefined) args.push('--requirepass', opts.password);
  args.push(...(opts.args ?? []));

  const auth = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`;
  const url = `${opts.tls === true ? 'rediss' : 'redis'}://${auth}${host}:${port}`;
  let child: ChildProcess | undefined;
  let output = '';
  let stopped = false;

  const launch = async (): Promise<void> => {
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    await waitForReady(proc, port, (chunk) => {
      output += chunk;
    });
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    // A paused server must be able to die from a catchable signal too.
    if (signal !== 'SIGKILL') proc.kill('SIGCONT');
    await exited;
  };

  const server: RedisServer = {
    host,
    port,
    url,
    caFile,
    dir,
    logs: () => output,
    kill,
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async restart() {
      await kill();
      await launch();
    },
    async cli(...cliArgs: string[]) {
      const base = ['-h', host, '-p', String(port)];
      if (caFile !== undefined) base.push('--tls', '--cacert', caFile);
      if (opts.password !== undefined) base.push('-a', opts.password, '--no-auth-warning');
      const { stdout } = await run('redis-cli', [...base, ...cliArgs], { timeout: 20_000 });
      return stdout;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      live.delete(server);
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  live.add(server);
  try {
    await launch();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** Waits until every node reports cluster_state:ok (after creation, or after a node was restarted). */
export async function waitClusterOk(cluster: RedisCluster): Promise<void> {
  await waitUntil(async () => {
    const infos = await Promise.all(cluster.nodes.map((node) => node.cli('CLUSTER', 'INFO')));
    return infos.every((info) => info.includes('cluster_state:ok'));
  }, CLUSTER_TIMEOUT_MS, 'every cluster node to report cluster_state:ok');
}

/** Starts `masters` cluster-enabled nodes and joins them with `redis-cli --cluster create`, no replicas. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const cluster: RedisCluster = {
    nodes,
    get url() {
      return nodes[0]?.url ?? '';
    },
    async stop() {
      live.delete(cluster);
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
  live.add(cluster);
  try {
    for (let i = 0; i < masters; i++) {
      // An explicit bus port: the default (port + 10000) may be taken or out of range.
      const busPort = await freePort();
      nodes.push(
        await startRedis({
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort),
            '--cluster-node-timeout', '5000'],
        }),
      );
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', '0',
      '--cluster-yes'], { timeout: CLUSTER_TIMEOUT_MS });
    await waitClusterOk(cluster);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Polls `check` until it returns true; bounded by `timeoutMs`. */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
}

/** Resolves when redis-server logs that it accepts connections; rejects with its output if it exits first. */
function waitForReady(proc: ChildProcess, port: number, onOutput: (chunk: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      onOutput(text);
      seen += text;
      if (seen.includes('Ready to accept connections')) finish();
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(new Error(`redis-server on port ${port} exited (code ${code}, signal ${signal}) before it was ready:\n${seen}`));
    const timer = setTimeout(
      () => finish(new Error(`redis-server on port ${port} was not ready within ${START_TIMEOUT_MS} ms:\n${seen}`)),
      START_TIMEOUT_MS,
    );
    function finish(err?: Error) {
      clearTimeout(timer);
      proc.off('exit', onExit);
      if (err === undefined) {
        resolve();
      } else {
        proc.kill('SIGKILL');
        reject(err);
      }
    }
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('exit', onExit);
  });
}
