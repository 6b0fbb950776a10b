import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

/** Thrown when a benchmark's child process fails to start or dies; `code` is stable for callers and tests. */
export class BenchProcessError extends Error {
  constructor(
    readonly code: 'start_timeout' | 'exited_early' | 'no_free_port',
    message: string,
  ) {
    super(message);
    this.name = 'BenchProcessError';
  }
}

/** A child process started by a benchmark; it is killed when the benchmark ends, errors or is interrupted. */
export interface BenchProcess {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Last stdout/stderr lines (bounded), for error messages. */
  readonly tail: string[];
  /** True once the process has exited. */
  exited(): boolean;
  /** Resolves with the first output line for which `match` returns a value. */
  waitLine<T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now, synchronously (for exit and signal handlers). */
  kill(): void;
}

const TAIL_LINES = 50;
const live = new Set<BenchProcess>();

/** Starts a tracked child process with piped output. */
export function startProcess(
  name: string,
  command: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; group?: boolean } = {},
): BenchProcess {
  // `group`: the child leads its own process group, so a shell's grandchildren are signalled with it.
  const group = opts.group ?? false;
  const proc = spawn(command, [...args], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: group });
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (group && proc.pid !== undefined) process.kill(-proc.pid, sig);
      else proc.kill(sig);
    } catch {
      // already gone
    }
  };
  const tail: string[] = [];
  const lineListeners = new Set<(line: string) => void>();
  const exitListeners = new Set<() => void>();
  let hasExited = false;
  let spawnError: Error | null = null;

  const onStream = (stream: NodeJS.ReadableStream | null): void => {
    if (!stream) return;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line: string) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      for (const l of [...lineListeners]) l(line);
    });
  };
  onStream(proc.stdout);
  onStream(proc.stderr);
  const markExited = (): void => {
    if (hasExited) return;
    hasExited = true;
    live.delete(bp);
    for (const l of [...exitListeners]) l();
  };
  proc.on('exit', markExited);
  proc.on('error', (err) => {
    spawnError = err;
    markExited();
  });

  const waitExit = (timeoutMs: number): Promise<boolean> =>
    hasExited
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            exitListeners.delete(done);
            resolve(true);
          };
          const timer = setTimeout(() => {
            exitListeners.delete(done);
            resolve(false);
          }, timeoutMs);
          exitListeners.add(done);
        });

  const bp: BenchProcess = {
    name,
    proc,
    pid: proc.pid ?? -1,
    tail,
    exited: () => hasExited,
    waitLine<T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
      for (const line of tail) {
        const v = match(line);
        if (v !== undefined) return Promise.resolve(v);
      }
      return new Promise<T>((resolve, reject) => {
        const cleanup = (): void => {
          clearTimeout(timer);
          lineListeners.delete(onLine);
          exitListeners.delete(onExit);
        };
        const onLine = (line: string): void => {
          const v = match(line);
          if (v === undefined) return;
          cleanup();
          resolve(v);
        };
        const onExit = (): void => {
          cleanup();
          const why = spawnError ? spawnError.message : `exit code ${String(proc.exitCode)}, signal ${String(proc.signalCode)}`;
          reject(new BenchProcessError('exited_early', `${name} exited before it was ready (${why}); last output:\n${tail.join('\n')}`));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new BenchProcessError('start_timeout', `${name} was not ready within ${timeoutMs} ms; last output:\n${tail.join('\n')}`));
        }, timeoutMs);
        lineListeners.add(onLine);
        if (hasExited) onExit();
        else exitListeners.add(onExit);
      });
    },
    async stop(graceMs = 5_000) {
      if (hasExited) return;
      signal('SIGTERM');
      if (await waitExit(graceMs)) return;
      signal('SIGKILL');
      await waitExit(5_000);
    },
    kill: () => signal('SIGKILL'),
  };
  live.add(bp);
  if (proc.pid === undefined) markExited();
  return bp;
}

/** Pids of the benchmark's child processes that are still running. */
export function livePids(): number[] {
  return [...live].map((p) => p.pid);
}

/** Stops every tracked process that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(2_000)));
}

/** Synchronous last resort for process 'exit' and signals: no child outlives the benchmark. */
export function killAllNow(): void {
  for (const p of live) p.kill();
}

/** A port that was free a moment ago on 127.0.0.1 (the caller retries if another process takes it first). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', (err) => reject(new BenchProcessError('no_free_port', `could not bind an ephemeral port on 127.0.0.1: ${err.message}`)));
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Parses a JSON log line and returns it when it is an object. */
export function jsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
