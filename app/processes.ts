/**
 * Child processes for `npm run dev`, the tests and the benchmarks: spawn, read stdout and stderr line by line, wait
 * for a readiness line, stop with SIGTERM then SIGKILL. Every process is tracked until it exits, so a caller can make
 * sure none outlives it. Node built-ins only: importing this loads nothing heavy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type ProcessErrorCode = 'start_timeout' | 'exited_early' | 'no_free_port';

/** Thrown when a child process does not get ready; `code` is stable for callers and tests. */
export class ProcessError extends Error {
  constructor(
    readonly code: ProcessErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ProcessError';
  }
}

/** How a process ended. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all (`code` 'ENOENT': the command is not on PATH). */
  readonly error?: NodeJS.ErrnoException;
}

export interface StartProcessOptions {
  /** @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** The child leads its own process group: signals reach a shell's grandchildren too, and a terminal's Ctrl-C does not. @default false */
  readonly group?: boolean;
  /** How many output lines `lines` keeps; waitLine() also looks back over these. @default 50 */
  readonly keepLines?: number;
  /** Called with every output line as it arrives. */
  readonly onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** A started child process with piped output. */
export interface ManagedProcess {
  readonly name: string;
  readonly proc: ChildProcess;
  /** -1 when the spawn failed. */
  readonly pid: number;
  /** The last `keepLines` lines of stdout and stderr, in arrival order. */
  readonly lines: string[];
  /** Settles once the process has exited or failed to spawn. */
  readonly exit: Promise<ExitInfo>;
  /** True once the process has exited. */
  exited(): boolean;
  /**
   * Resolves with the first output line (kept or future) for which `match` returns a value. Rejects with a
   * ProcessError when the process exits first or `timeoutMs` passes; `what` names the awaited line in that error.
   */
  waitLine<T>(match: (line: string) => T | undefined, timeoutMs: number, what?: string): Promise<T>;
  /** The exit, or null when the process still runs after `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<ExitInfo | null>;
  /** Sends a signal (to the whole group with `group`); nothing once the process is gone. */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now, synchronously (for exit and signal handlers). */
  kill(): void;
}

const KEEP_LINES = 50;
const STOP_GRACE_MS = 5_000;
/** How long after 'exit' the output may still be arriving. */
const OUTPUT_DRAIN_MS = 1_000;
const live = new Set<ManagedProcess>();

/** Starts a tracked child process with piped output. */
export function startProcess(name: string, command: string, args: readonly string[], opts: StartProcessOptions = {}): ManagedProcess {
  const group = opts.group ?? false;
  const keepLines = opts.keepLines ?? KEEP_LINES;
  const proc = spawn(command, [...args], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: group });
  const lines: string[] = [];
  const lineListeners = new Set<(line: string) => void>();
  let exitInfo: ExitInfo | null = null;
  let settleExit: (info: ExitInfo) => void = () => undefined;
  const exit = new Promise<ExitInfo>((resolve) => (settleExit = resolve));

  const signal = (sig: NodeJS.Signals): void => {
    if (exitInfo !== null || proc.pid === undefined) return;
    try {
      if (group) process.kill(-proc.pid, sig);
      else proc.kill(sig);
    } catch {
      // gone between the check and the signal
    }
  };
  const read = (stream: NodeJS.ReadableStream | null, source: 'stdout' | 'stderr'): void => {
    if (!stream) return;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line: string) => {
      lines.push(line);
      if (lines.length > keepLines) lines.shift();
      opts.onLine?.(line, source);
      for (const listener of [...lineListeners]) listener(line);
    });
  };
  read(proc.stdout, 'stdout');
  read(proc.stderr, 'stderr');
  const markExited = (info: ExitInfo): void => {
    if (exitInfo !== null) return;
    exitInfo = info;
    live.delete(managed);
    settleExit(info);
  };
  // Exited once its output is read to the end ('close'), so a waiter never misses the last lines. A grandchild that
  // keeps the pipes open must not hide the exit, hence the bound after 'exit'.
  proc.on('close', (code: number | null, sig: NodeJS.Signals | null) => markExited({ code, signal: sig }));
  proc.on('exit', (code, sig) => {
    setTimeout(() => markExited({ code, signal: sig }), OUTPUT_DRAIN_MS).unref();
  });
  proc.on('error', (error: NodeJS.ErrnoException) => {
    // 'error' also reports a failed kill(); only a process that never started has no pid.
    if (proc.pid === undefined) markExited({ code: null, signal: null, error });
  });

  const waitExit = async (timeoutMs: number): Promise<ExitInfo | null> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    try {
      return await Promise.race([exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  const managed: ManagedProcess = {
    name,
    proc,
    pid: proc.pid ?? -1,
    lines,
    exit,
    exited: () => exitInfo !== null,
    waitLine<T>(match: (line: string) => T | undefined, timeoutMs: number, what = 'its ready line'): Promise<T> {
      for (const line of lines) {
        const value = match(line);
        if (value !== undefined) return Promise.resolve(value);
      }
      return new Promise<T>((resolve, reject) => {
        let done = false;
        const finish = (): void => {
          done = true;
          clearTimeout(timer);
          lineListeners.delete(onLine);
        };
        const onLine = (line: string): void => {
          const value = match(line);
          if (value === undefined || done) return;
          finish();
          resolve(value);
        };
        const timer = setTimeout(() => {
          finish();
          reject(new ProcessError('start_timeout', `${name} did not print ${what} within ${timeoutMs} ms; last output:\n${lines.join('\n')}`));
        }, timeoutMs);
        lineListeners.add(onLine);
        void exit.then((info) => {
          if (done) return;
          finish();
          const why = info.error ? info.error.message : `exit code ${String(info.code)}, signal ${String(info.signal)}`;
          reject(new ProcessError('exited_early', `${name} exited before ${what} (${why}); last output:\n${lines.join('\n')}`, { cause: info.error }));
        });
      });
    },
    waitExit,
    signal,
    async stop(graceMs = STOP_GRACE_MS) {
      if (exitInfo !== null) return;
      signal('SIGTERM');
      if ((await waitExit(graceMs)) !== null) return;
      signal('SIGKILL');
      await waitExit(STOP_GRACE_MS);
    },
    kill: () => signal('SIGKILL'),
  };
  live.add(managed);
  return managed;
}

export interface ReadyOptions<T> extends StartProcessOptions {
  /** Returns a value for the line that says the process is ready, undefined for every other line. */
  readonly ready: (line: string) => T | undefined;
  readonly timeoutMs: number;
  /** Names the awaited line in errors, e.g. 'its ready line'. */
  readonly what: string;
}

/** Starts a process and waits for its ready line; one that never gets ready is stopped before the error is thrown. */
export async function startReady<T>(
  name: string,
  command: string,
  args: readonly string[],
  opts: ReadyOptions<T>,
): Promise<{ process: ManagedProcess; ready: T }> {
  const proc = startProcess(name, command, args, opts);
  try {
    return { process: proc, ready: await proc.waitLine(opts.ready, opts.timeoutMs, opts.what) };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Pids of the tracked processes that still run. */
export function livePids(): number[] {
  return [...live].map((p) => p.pid);
}

/** Stops every tracked process that still runs. */
export async function stopAllProcesses(graceMs = 2_000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(graceMs)));
}

/** Synchronous last resort for process 'exit' and signal handlers: no child outlives its parent. */
export function killAllNow(): void {
  for (const p of live) p.kill();
}

/** Parses a JSON log line and returns it when it is an object. */
export function jsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
