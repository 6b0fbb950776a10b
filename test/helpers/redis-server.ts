/**
 * Real redis-server processes for integration tests: one server (plain or TLS-only, optionally with a password),
 * or a Redis Cluster of N masters. Every server runs on free loopback ports in its own temporary folder. Suites start
 * them through useRedis() (./fixtures), which stops them after the test or block.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../app/free-port';
import { redisServerArgs, startRedisProcess } from '../../app/local-servers';
import type { ManagedProcess } from '../../app/processes';
import { roomChannel } from '../../service/backplane/types';
import { makeTlsCerts } from './certs';

const run = promisify(execFile);
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
  /** A fixed port. @default a free loopback port */
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

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  requireRedisServer();
  const dir = await mkdtemp(join(tmpdir(), 'relay-redis-'));
  const host = '127.0.0.1';
  let caFile: string | undefined;
  let portArgs = (port: number): string[] => redisServerArgs(port, dir);
  if (opts.tls === true) {
    const certs = await makeTlsCerts(dir);
    caFile = certs.caFile;
    portArgs = (port) => [...redisServerArgs(0, dir), '--tls-port', String(port), '--tls-cert-file', certs.certFile,
      '--tls-key-file', certs.keyFile, '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no'];
  }
  const args = (port: number): string[] => [
    ...portArgs(port),
    ...(opts.password === undefined ? [] : ['--requirepass', opts.password]),
    ...(opts.args ?? []),
  ];

  let child: ManagedProcess | undefined;
  try {
    const first = await startRedisProcess({ args, port: opts.port });
    child = first.process;
    return redisServer(first.port);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  function redisServer(port: number): RedisServer {
    const auth = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`;
    let stopped = false;
    const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
      const proc = child;
      child = undefined;
      if (proc === undefined) return;
      proc.signal(signal);
      // A paused server must be able to die from a catchable signal too.
      if (signal !== 'SIGKILL') proc.signal('SIGCONT');
      await proc.exit;
    };
    return {
      host,
      port,
      url: `${opts.tls === true ? 'rediss' : 'redis'}://${auth}${host}:${port}`,
      caFile,
      dir,
      kill,
      pause: () => child?.signal('SIGSTOP'),
      resume: () => child?.signal('SIGCONT'),
      async restart() {
        await kill();
        child = (await startRedisProcess({ args, port })).process;
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
        await kill();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
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
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
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

/** The master whose `CLUSTER NODES` line marked `myself` lists a slot range containing `slot`. */
export async function slotOwner(cluster: RedisCluster, slot: number): Promise<RedisServer> {
  for (const node of cluster.nodes) {
    const myself = (await node.cli('CLUSTER', 'NODES')).split('\n').find((line) => line.includes('myself'));
    for (const range of (myself ?? '').trim().split(' ').slice(8)) {
      const [from, to = from] = range.split('-').map(Number);
      if (slot >= from && slot <= to) return node;
    }
  }
  throw new Error(`no node owns slot ${slot}`);
}

/** One room per master, each hashing (as the relay names its channel under `prefix`) to a slot that master owns. */
export async function roomsOnDistinctShards(cluster: RedisCluster, prefix: string): Promise<Array<{ room: string; owner: RedisServer }>> {
  const picked = new Map<RedisServer, string>();
  for (let i = 0; i < 200 && picked.size < cluster.nodes.length; i++) {
    const room = `room-${i}`;
    const slot = Number((await cluster.nodes[0].cli('CLUSTER', 'KEYSLOT', roomChannel(prefix, room))).trim());
    const owner = await slotOwner(cluster, slot);
    if (!picked.has(owner)) picked.set(owner, room);
  }
  if (picked.size < cluster.nodes.length) throw new Error(`found rooms on only ${picked.size} of ${cluster.nodes.length} shards`);
  return [...picked].map(([owner, room]) => ({ room, owner }));
}
