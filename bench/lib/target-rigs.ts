/**
 * What the fan-out and many-rooms benchmarks set up alike: one redis-server shared by every target, the generator pinned
 * apart from the servers, instances of a target started in turn, members spread over them, and a probe that proves
 * every instance's subscriptions are live before anything is measured.
 */
import { pinSelf, type CpuPinning } from './cpu-pinning';
import { connectRawMember, type FrameSink, type RawMember } from './raw-subscriber';
import { startBenchRedis, startBenchRelay, type BenchRedis, type BenchRelay, type BenchTarget } from './servers';
import { pollUntil } from './stats';
import { connectMany } from './ws-load';

const CONNECT_CONCURRENCY = 50;
const PROBE_TIMEOUT_MS = 15_000;

/** Options both rate-climbing benchmarks take. */
export interface TargetRunOptions {
  /** Keep the generator and the servers on separate CPUs (see cpu-pinning.ts). @default none */
  readonly pinning?: CpuPinning | null;
  /** Progress lines (one per run). */
  readonly log?: (line: string) => void;
}

/** What one measured run at one offered rate reports in both benchmarks. */
export interface RateRunMeasures {
  readonly publishedPerSec: number;
  readonly deliveriesPerSec: number;
  /** Deliveries in the window / (messages published in the window × members of the room). */
  readonly deliveredRatio: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU seconds of all relay processes per 100,000 deliveries. */
  readonly serverCpuPer100k: number;
}

/**
 * Starts redis-server on the servers' CPUs and pins this process to the generator's, makes the targets' rigs, runs
 * `body`, then stops every rig, Redis and the pinning, whatever happened.
 */
export async function withSharedRedis<R extends { stop(): Promise<void> }, T>(
  pinning: CpuPinning | null,
  makeRigs: (redis: BenchRedis) => R[],
  body: (rigs: R[]) => Promise<T>,
): Promise<T> {
  const redis = await startBenchRedis(pinning?.servers);
  const unpin = pinning ? pinSelf(pinning.generator) : () => undefined;
  const rigs = makeRigs(redis);
  try {
    return await body(rigs);
  } finally {
    for (const rig of rigs) await rig.stop();
    await redis.stop();
    unpin();
  }
}

/**
 * `count` instances of `target` on the shared Redis, started one after the other, named `<label>-<i>`; if one fails to
 * start, those already running are stopped.
 */
export async function startInstances(target: BenchTarget, redis: BenchRedis, count: number, cpus: string | undefined, label = target.name): Promise<BenchRelay[]> {
  const relays: BenchRelay[] = [];
  try {
    for (let i = 0; i < count; i++) relays.push(await startBenchRelay(`${label}-${i}`, target, { REDIS_URL: redis.url }, cpus));
  } catch (err) {
    await Promise.all(relays.map((r) => r.stop()));
    throw err;
  }
  return relays;
}

/**
 * `count` raw members, member `i` joining `roomOf(i)` on instance `(first + i) % relays.length`, so they alternate over
 * the instances; `query` is added to the WebSocket URL.
 */
export function connectSpread(relays: readonly BenchRelay[], count: number, roomOf: (i: number) => string, onFrame: FrameSink, first = 0, query = ''): Promise<RawMember[]> {
  return connectMany(count, CONNECT_CONCURRENCY, (i) => connectRawMember(`${relays[(first + i) % relays.length].wsUrl}${query}`, roomOf(i), onFrame));
}

/**
 * Waits until `reached()` counts `expected` deliveries of the probe just published; throws, with the instances' last
 * output, when they do not all arrive within PROBE_TIMEOUT_MS.
 */
export async function expectProbeDelivered(target: string, relays: readonly BenchRelay[], reached: () => number, expected: number, members: string): Promise<void> {
  if (await pollUntil(() => reached() >= expected, PROBE_TIMEOUT_MS)) return;
  throw new Error(
    `${target}: the probe reached ${reached()} of ${expected} ${members} within ${PROBE_TIMEOUT_MS} ms; check that every instance subscribes to Redis ` +
      `(last output: ${relays.map((r) => r.process.lines.slice(-3).join(' | ')).join(' || ')})`,
  );
}
