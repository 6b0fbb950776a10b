/**
 * Gives memory back once a busy instance goes idle. V8 grows its young generation to the maximum the node flags allow
 * (`--max-semi-space-size`, see app/bundle.ts) while much of what it allocates lives on — thousands of connections
 * opening, a burst of messages — and keeps those pages resident until a full collection that aims to reduce memory,
 * which an idle process never runs by itself. A larger young generation makes busy instances collect less often
 * (fewer, cheaper scavenges per message); this module lets the instance have it without holding it while idle: when
 * the event loop has been nearly idle for a few seconds and the young generation is larger than it needs to be, it runs
 * one memory-reducing collection (`gc({ flavor: 'last-resort' })`, available with node's `--expose-gc`).
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

export interface MemoryReducerOptions {
  /** How often the event loop's utilisation is checked. @default 1000 */
  readonly checkIntervalMs?: number;
  /** Utilisation (0–1) below which a check counts as idle. @default 0.05 */
  readonly idleUtilization?: number;
  /** Consecutive idle checks before reducing: long enough that a lull between bursts of traffic is not mistaken for idleness. @default 10 */
  readonly idleChecks?: number;
  /** Young generation size (committed bytes) above which reducing is worth a full collection. @default 8 MiB */
  readonly minYoungBytes?: number;
  /** Least time between two reductions, so an instance that keeps growing again is not collected over and over. @default 10000 */
  readonly minSpacingMs?: number;
  /** Runs the collection; default: the `gc` function that `--expose-gc` installs. */
  readonly collect?: () => void;
  /** Reads the young generation's committed size; default: V8's heap space statistics. */
  readonly youngBytes?: () => number;
  /** Reads the event loop's utilisation since `previous`; default: performance.eventLoopUtilization. */
  readonly utilization?: (previous: EventLoopUtilization | undefined) => EventLoopUtilization;
  /** Told about each reduction: the young generation before and after, and how long the collection took. */
  readonly onReduce?: (report: { readonly beforeBytes: number; readonly afterBytes: number; readonly ms: number }) => void;
}

export interface MemoryReducer {
  /** One check (the timer calls it); exposed so the decision can be tested without waiting. Returns whether it reduced. */
  check(now?: number): boolean;
  stop(): void;
}

const DEFAULTS = { checkIntervalMs: 1000, idleUtilization: 0.05, idleChecks: 10, minYoungBytes: 8 * 1024 * 1024, minSpacingMs: 10_000 };

/** Committed bytes of V8's young generation (new space plus new large objects). */
export function youngGenerationBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics()) {
    if (space.space_name === 'new_space' || space.space_name === 'new_large_object_space') bytes += space.space_size;
  }
  return bytes;
}

/** The `gc` function node installs with --expose-gc, as a memory-reducing full collection; null without the flag. */
export function exposedCollector(): (() => void) | null {
  const gc = globalThis.gc;
  if (typeof gc !== 'function') return null;
  return () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/**
 * Starts checking (the timer does not keep the process alive). Returns null when there is nothing to collect with
 * (node started without --expose-gc and no `collect` given): the instance then keeps what V8 grew.
 */
export function startMemoryReducer(opts: MemoryReducerOptions = {}): MemoryReducer | null {
  const collect = opts.collect ?? exposedCollector();
  if (collect === null) return null;
  const settings = { ...DEFAULTS, ...opts };
  const youngBytes = opts.youngBytes ?? youngGenerationBytes;
  const utilization = opts.utilization ?? ((previous) => (previous === undefined ? performance.eventLoopUtilization() : performance.eventLoopUtilization(previous)));
  let mark = utilization(undefined);
  let idleStreak = 0;
  let lastReduced = -Infinity;

  const check = (now = Date.now()): boolean => {
    const since = utilization(mark);
    mark = utilization(undefined);
    idleStreak = since.utilization < settings.idleUtilization ? idleStreak + 1 : 0;
    if (idleStreak < settings.idleChecks || now - lastReduced < settings.minSpacingMs) return false;
    const beforeBytes = youngBytes();
    if (beforeBytes <= settings.minYoungBytes) return false;
    const started = performance.now();
    collect();
    lastReduced = now;
    idleStreak = 0;
    opts.onReduce?.({ beforeBytes, afterBytes: youngBytes(), ms: performance.now() - started });
    return true;
  };
  const timer = setInterval(() => check(), settings.checkIntervalMs);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}
