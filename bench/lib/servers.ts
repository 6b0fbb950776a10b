import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisServerArgs, startRedisProcess, startRelayProcess } from '../../app/local-servers';
import type { ManagedProcess } from '../../app/processes';
import { pinned } from './cpu-pinning';

const START_TIMEOUT_MS = 15_000;

export interface BenchRedis {
  readonly port: number;
  readonly url: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

/** Starts a throwaway redis-server on a free loopback port (never 6379), no persistence; optionally on `cpus` only. */
export async function startBenchRedis(cpus?: string): Promise<BenchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'));
  try {
    const { port, process: proc } = await startRedisProcess({
      args: (p) => [...redisServerArgs(p, dir), '--daemonize', 'no'],
      wrap: (cmd, args) => pinned(cpus, cmd, args),
      timeoutMs: START_TIMEOUT_MS,
    });
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      process: proc,
      async stop() {
        await proc.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface BenchRelay {
  readonly name: string;
  readonly port: number;
  readonly wsUrl: string;
  readonly httpUrl: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

/** A server the benchmarks measure: the bundled relay or the floor. */
export interface BenchTarget {
  /** 'relay', 'relay-recovery' or 'floor'. */
  readonly name: string;
  /** Script run with `node`. */
  readonly script: string;
  readonly cwd?: string;
  /** Node flags before the script: the relay gets the ones its Procfile gives it (RELAY_NODE_FLAGS). */
  readonly nodeFlags?: readonly string[];
  /** Extra environment for each instance (REDIS_URL, PORT and HOST are set by the harness). */
  readonly env: Record<string, string>;
  /** Query string clients add to the WebSocket URL (e.g. `token=<JWT>`). @default none */
  readonly wsQuery?: string;
}

/**
 * Runs an instance of a target (the bundled relay's server.js, or bench/floor-relay.js) on an ephemeral loopback port,
 * optionally on `cpus` only. Both log the listening record ({event:'listening', port}) when ready.
 */
export async function startBenchRelay(name: string, target: BenchTarget, env: Record<string, string>, cpus?: string): Promise<BenchRelay> {
  // BENCH_CPU_PROF_DIR: every relay writes a V8 CPU profile there when it exits (see bench/profile-summary.ts).
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  const profArgs = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `${name}.${Date.now()}.cpuprofile`] : [];
  const [cmd, args] = pinned(cpus, process.execPath, [...(target.nodeFlags ?? []), ...profArgs, target.script]);
  const { port, process: proc } = await startRelayProcess({
    name,
    command: cmd,
    args,
    cwd: target.cwd,
    env: { ...process.env, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...target.env, ...env },
    timeoutMs: START_TIMEOUT_MS,
  });
  return {
    name,
    port,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    httpUrl: `http://127.0.0.1:${port}`,
    process: proc,
    stop: () => proc.stop(),
  };
}
