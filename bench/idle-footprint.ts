import { rssBytes } from './lib/proc-stats';
import { startBenchRedis, startBenchRelay, type BenchTarget } from './lib/servers';
import { median, pause } from './lib/stats';
import { connectMany, connectMember, type LoadSocket } from './lib/ws-load';

export type IdleTargetSpec = BenchTarget;

export interface IdleOptions {
  readonly targets: readonly IdleTargetSpec[];
  /** @default 5000 */
  readonly connections?: number;
  /** @default 100 */
  readonly rooms?: number;
  /** Measurements per target, each with a fresh instance, targets interleaved; medians are reported. @default 3 */
  readonly runs?: number;
  /** RSS samples taken after settling; the median is used. @default 5 */
  readonly samples?: number;
  /** Gap between samples. @default 500 */
  readonly sampleIntervalMs?: number;
  /**
   * Quiet time before the first sample of each phase: an idle relay gives its young generation back after a few idle
   * seconds (service/memory-reducer.ts), and the footprint of idle connections is what it holds then. @default 12000
   */
  readonly settleMs?: number;
  /** @default 100 */
  readonly connectConcurrency?: number;
  readonly log?: (line: string) => void;
}

/** One measurement of one target, on a fresh instance. */
export interface IdleRun {
  readonly baselineRssBytes: number;
  readonly loadedRssBytes: number;
  readonly bytesPerConnection: number;
  /**
   * RSS growth per connection over the second half only: the young generation's growth (garbage the server cannot be
   * made to collect) is mostly paid in the first half, so this is closer to the live cost.
   */
  readonly marginalBytesPerConnection: number;
  /** Sockets the server closed while idle (should be 0). */
  readonly closedWhileIdle: number;
}

/** Medians over the runs of one target (closedWhileIdle: the sum). */
export interface IdleTargetResult extends IdleRun {
  readonly name: string;
  readonly connections: number;
  readonly rooms: number;
  readonly runs: IdleRun[];
}

export interface IdleResult {
  readonly targets: IdleTargetResult[];
}

/**
 * RSS growth per idle connection: each target runs as one instance against a throwaway Redis; its RSS is
 * sampled (median of several, after settling) before and after `connections` sockets each joined one of `rooms` rooms.
 * Each target is measured `runs` times on a fresh instance, alternating with the other targets.
 */
export async function runIdleFootprint(opts: IdleOptions): Promise<IdleResult> {
  const connections = opts.connections ?? 5000;
  const rooms = opts.rooms ?? 100;
  const runs = opts.runs ?? 3;
  const log = opts.log ?? (() => undefined);
  const redis = await startBenchRedis();
  const byTarget = new Map<IdleTargetSpec, IdleRun[]>(opts.targets.map((t) => [t, []]));
  try {
    for (let run = 1; run <= runs; run++) {
      for (const spec of opts.targets) {
        const result = await measureOnce(spec, redis.url, connections, rooms, opts);
        log(
          `${spec.name} run ${run}/${runs}: ${connections} idle connections in ${rooms} rooms: RSS ${mb(result.baselineRssBytes)} → ` +
            `${mb(result.loadedRssBytes)} MB, ${fmtKb(result.bytesPerConnection)} per connection ` +
            `(${fmtKb(result.marginalBytesPerConnection)} over the second half)`,
        );
        byTarget.get(spec)?.push(result);
      }
    }
  } finally {
    await redis.stop();
  }
  return {
    targets: opts.targets.map((spec) => {
      const measured = byTarget.get(spec) ?? [];
      const m = (f: (r: IdleRun) => number): number => median(measured.map(f));
      return {
        name: spec.name,
        connections,
        rooms,
        runs: measured,
        baselineRssBytes: m((r) => r.baselineRssBytes),
        loadedRssBytes: m((r) => r.loadedRssBytes),
        bytesPerConnection: m((r) => r.bytesPerConnection),
        marginalBytesPerConnection: m((r) => r.marginalBytesPerConnection),
        closedWhileIdle: measured.reduce((a, r) => a + r.closedWhileIdle, 0),
      };
    }),
  };
}

async function measureOnce(spec: IdleTargetSpec, redisUrl: string, connections: number, rooms: number, opts: IdleOptions): Promise<IdleRun> {
  const samples = opts.samples ?? 5;
  const interval = opts.sampleIntervalMs ?? 500;
  const concurrency = opts.connectConcurrency ?? 100;
  const relay = await startBenchRelay(`${spec.name}-idle`, spec, { REDIS_URL: redisUrl });
  const opened: LoadSocket[] = [];
  try {
    const sample = async (): Promise<number> => {
      const values: number[] = [];
      await pause(opts.settleMs ?? 12_000);
      for (let i = 0; i < samples; i++) {
        await pause(interval);
        values.push(rssBytes(relay.process.pid));
      }
      return median(values);
    };
    const url = spec.wsQuery ? `${relay.wsUrl}?${spec.wsQuery}` : relay.wsUrl;
    // One connection first, so lazily loaded code paths (upgrade, join, subscribe) are not charged to the sockets.
    opened.push(await connectMember(url, 'room-warmup'));
    const baseline = await sample();
    const half = Math.floor(connections / 2);
    const first = await connectMany(half, concurrency, (i) => connectMember(url, `room-${i % rooms}`));
    opened.push(...first);
    const halfway = await sample();
    const second = await connectMany(connections - half, concurrency, (i) => connectMember(url, `room-${(half + i) % rooms}`));
    opened.push(...second);
    const loaded = await sample();
    return {
      baselineRssBytes: baseline,
      loadedRssBytes: loaded,
      bytesPerConnection: (loaded - baseline) / connections,
      marginalBytesPerConnection: (loaded - halfway) / (connections - half),
      closedWhileIdle: [...first, ...second].filter((s) => !s.isOpen()).length,
    };
  } finally {
    await closeAll(opened);
    await relay.stop();
  }
}

async function closeAll(sockets: LoadSocket[]): Promise<void> {
  // In batches: thousands of simultaneous close handshakes only add noise to the next measurement.
  for (let i = 0; i < sockets.length; i += 500) await Promise.all(sockets.slice(i, i + 500).map((s) => s.close()));
}

function fmtKb(bytes: number): string {
  return `${(bytes / 1000).toFixed(2)} KB`;
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
