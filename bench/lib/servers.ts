import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pinned } from './cpu-pinning';
import { BenchProcessError, freePort, jsonLine, startProcess, type BenchProcess } from './processes';

const START_TIMEOUT_MS = 15_000;
const PORT_ATTEMPTS = 5;

export interface BenchRedis {
  readonly port: number;
  readonly url: string;
  readonly process: BenchProcess;
  stop(): Promise<void>;
}

/** Starts a throwaway redis-server on a free loopback port (never 6379), no persistence; optionally on `cpus` only. */
export async function startBenchRedis(cpus?: string): Promise<BenchRedis> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    if (port === 6379) continue;
    const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'));
    const [cmd, args] = pinned(cpus, 'redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no',
    ]);
    const proc = startProcess('redis-server', cmd, args);
    try {
      await proc.waitLine((l) => (l.includes('Ready to accept connections') ? true : undefined), START_TIMEOUT_MS);
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
      lastError = err;
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
      // Another process may have taken the port between the probe and the bind: try another one.
    }
  }
  throw lastError instanceof Error ? lastError : new BenchProcessError('no_free_port', 'redis-server did not start on any free port');
}

export interface BenchRelay {
  readonly name: string;
  readonly port: number;
  readonly wsUrl: string;
  readonly httpUrl: string;
  readonly process: BenchProcess;
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
}

/**
 * Runs an instance of a target (the bundled relay's server.js, or bench/floor-relay.js) on an ephemeral loopback port,
 * optionally on `cpus` only. Both print the JSON line {msg:'relay listening', port} when ready.
 */
export async function startBenchRelay(name: string, target: BenchTarget, env: Record<string, string>, cpus?: string): Promise<BenchRelay> {
  // BENCH_CPU_PROF_DIR: every relay writes a V8 CPU profile there when it exits (see bench/profile-summary.ts).
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  const profArgs = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `${name}.${Date.now()}.cpuprofile`] : [];
  const [cmd, args] = pinned(cpus, process.execPath, [...(target.nodeFlags ?? []), ...profArgs, target.script]);
  const proc = startProcess(name, cmd, args, {
    cwd: target.cwd,
    env: { ...process.env, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...target.env, ...env },
  });
  try {
    const port = await proc.waitLine((l) => {
      const j = jsonLine(l);
      return j && j.msg === 'relay listening' && typeof j.port === 'number' ? j.port : undefined;
    }, START_TIMEOUT_MS);
    return {
      name,
      port,
      wsUrl: `ws://127.0.0.1:${port}/ws`,
      httpUrl: `http://127.0.0.1:${port}`,
      process: proc,
      stop: () => proc.stop(),
    };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}
