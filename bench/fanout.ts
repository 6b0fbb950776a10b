import { performance } from 'node:perf_hooks';
import type { CpuPinning } from './lib/cpu-pinning';
import { cpuSecondsOf, machineCpu } from './lib/proc-stats';
import type { BenchRedis, BenchRelay, BenchTarget } from './lib/servers';
import { median, pause, pollUntil } from './lib/stats';
import { connectSpread, expectProbeDelivered, startInstances, withSharedRedis, type RateRunMeasures, type TargetRunOptions } from './lib/target-rigs';
import { connectMember, DeliverySink, RatePublisher, type LoadSocket, type WsLoadSocket } from './lib/ws-load';

/** A relay implementation under test: how to start one instance of it. */
export type FanoutTargetSpec = BenchTarget;

export interface FanoutOptions extends TargetRunOptions {
  readonly targets: readonly FanoutTargetSpec[];
  /** @default 2 */
  readonly instances?: number;
  /** @default 200 */
  readonly subscribers?: number;
  /** Publish rates (msg/s) tried in order until one falls behind. */
  readonly rates: readonly number[];
  /** Extra steps halving the gap between the last rate that kept up and the first that did not. @default 3 */
  readonly bisectSteps?: number;
  /** Runs per point; the median is reported. @default 3 */
  readonly repeats?: number;
  /** @default 500 */
  readonly warmupMs?: number;
  /** @default 2000 */
  readonly measureMs?: number;
  /** Measure p99 at half of each target's saturation rate. @default true */
  readonly halfSaturationStep?: boolean;
  /** A step keeps up when delivered/expected ≥ this. @default 0.95 */
  readonly minDeliveredRatio?: number;
  /** A step keeps up only while p99 latency stays below this. @default 500 */
  readonly maxP99Ms?: number;
}

/** One measured run at one rate. */
export interface FanoutRun extends RateRunMeasures {
  /** Cores used by the relay processes, Redis and the load generator during the window. */
  readonly relayCores: number;
  readonly redisCores: number;
  readonly clientCores: number;
  /** Share of the generator's CPU spent in the kernel (socket reads and writes). */
  readonly clientSystemShare: number;
  /** Fraction of the whole machine's CPU that was busy. */
  readonly machineBusy: number;
  /** Deliveries still missing after the drain (dropped or shed). */
  readonly lost: number;
  /** Subscriber sockets the server closed during the run. */
  readonly closedSubscribers: number;
}

/** Medians over the runs at one rate. */
export interface FanoutPoint extends Omit<FanoutRun, 'lost' | 'closedSubscribers'> {
  readonly rate: number;
  readonly runs: number;
  readonly keptUp: boolean;
  readonly lost: number;
  readonly closedSubscribers: number;
  /** Relay processes that exited during these runs (they are restarted). */
  readonly crashes: number;
}

export interface FanoutTargetResult {
  readonly name: string;
  readonly points: FanoutPoint[];
  /** Highest rate (msg/s) that kept up; 0 if none did. */
  readonly saturationRate: number;
  /** Median deliveries/s at saturationRate. */
  readonly saturationDeliveriesPerSec: number;
  /** True when even the last rate tried kept up (the real saturation is higher). */
  readonly saturationIsLowerBound: boolean;
  /** The point measured at half of saturationRate, when requested. */
  readonly halfSaturation?: FanoutPoint;
}

export interface FanoutResult {
  readonly instances: number;
  readonly subscribers: number;
  readonly payloadBytes: number;
  readonly repeats: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly pinning: CpuPinning | null;
  readonly targets: FanoutTargetResult[];
}

const ROOM = 'bench-fanout';
const DRAIN_QUIET_MS = 300;
// Long enough for an overloaded target to work off its backlog, so it does not load the next run (possibly of the other target).
const DRAIN_TIMEOUT_MS = 15_000;
/** Servers using less CPU than this (all relay processes and Redis together, in cores) are taken as idle. */
const SETTLED_CORES = 0.15;

/** A running deployment of one target: Redis is shared, relays and sockets are its own. */
class TargetRig {
  relays: BenchRelay[] = [];
  subscribers: LoadSocket[] = [];
  publisherSocket: WsLoadSocket | null = null;
  publisher: RatePublisher | null = null;
  readonly sink = new DeliverySink();
  crashes = 0;

  constructor(
    readonly spec: FanoutTargetSpec,
    readonly redis: BenchRedis,
    private readonly instances: number,
    private readonly subscriberCount: number,
    private readonly serverCpus: string | undefined,
  ) {}

  healthy(): boolean {
    return (
      this.relays.length === this.instances &&
      this.relays.every((r) => !r.process.exited()) &&
      this.subscribers.length === this.subscriberCount &&
      this.subscribers.every((s) => s.isOpen()) &&
      this.publisherSocket !== null &&
      this.publisherSocket.isOpen()
    );
  }

  /** (Re)starts whatever is missing: dead relays restart the whole rig, closed sockets reconnect. */
  async ensure(): Promise<void> {
    if (this.healthy()) return;
    if (this.relays.length > 0 && this.relays.some((r) => r.process.exited())) {
      this.crashes += this.relays.filter((r) => r.process.exited()).length;
      await this.stop();
    }
    if (this.relays.length === 0) this.relays = await startInstances(this.spec, this.redis, this.instances, this.serverCpus);
    await Promise.all([...this.subscribers, ...(this.publisherSocket ? [this.publisherSocket] : [])].filter((s) => !s.isOpen()).map((s) => s.close()));
    const kept = this.subscribers.filter((s) => s.isOpen());
    const missing = this.subscriberCount - kept.length;
    const fresh = await connectSpread(this.relays, missing, () => ROOM, this.sink.onFrame, kept.length);
    this.subscribers = [...kept, ...fresh];
    if (!this.publisherSocket || !this.publisherSocket.isOpen()) {
      this.publisherSocket = await connectMember(this.relays[0].wsUrl, null);
      this.publisher = new RatePublisher(this.publisherSocket, ROOM);
    }
    await this.probe();
  }

  /** One message must reach every subscriber: proves every instance's subscription is live before measuring. */
  private async probe(): Promise<void> {
    const before = this.sink.delivered;
    this.publisher?.publishOne();
    await expectProbeDelivered(this.spec.name, this.relays, () => this.sink.delivered - before, this.subscriberCount, 'subscribers');
  }

  pids(): number[] {
    return this.relays.map((r) => r.process.pid);
  }

  async stop(): Promise<void> {
    this.publisher?.stop();
    await Promise.all([...this.subscribers, ...(this.publisherSocket ? [this.publisherSocket] : [])].map((s) => s.close()));
    this.subscribers = [];
    this.publisherSocket = null;
    this.publisher = null;
    await Promise.all(this.relays.map((r) => r.stop()));
    this.relays = [];
  }
}

interface TargetState {
  readonly rig: TargetRig;
  phase: 'climb' | 'bisect' | 'done';
  ladderIndex: number;
  lo: number;
  hi: number;
  bisectLeft: number;
  points: FanoutPoint[];
}

/**
 * Steps each target through fixed publish rates until delivery falls behind, then bisects between the
 * last rate that kept up and the first that did not. Runs of different targets at the same rate are
 * interleaved so background load on the machine hits both alike.
 */
export async function runFanout(opts: FanoutOptions): Promise<FanoutResult> {
  const instances = opts.instances ?? 2;
  const subscribers = opts.subscribers ?? 200;
  const repeats = opts.repeats ?? 3;
  const warmupMs = opts.warmupMs ?? 500;
  const measureMs = opts.measureMs ?? 2000;
  const bisectSteps = opts.bisectSteps ?? 3;
  const minRatio = opts.minDeliveredRatio ?? 0.95;
  const maxP99 = opts.maxP99Ms ?? 500;
  const log = opts.log ?? (() => undefined);
  if (opts.rates.length === 0) throw new Error('runFanout: `rates` is empty; give at least one publish rate in msg/s');

  const pinning = opts.pinning ?? null;
  const makeRigs = (redis: BenchRedis): TargetRig[] => opts.targets.map((spec) => new TargetRig(spec, redis, instances, subscribers, pinning?.servers));
  // Each run is given every target's rig (allRigs): it starts only once none of them is still working off a backlog.
  return withSharedRedis(pinning, makeRigs, async (allRigs) => {
    const states: TargetState[] = allRigs.map((rig) => ({ rig, phase: 'climb', ladderIndex: 0, lo: 0, hi: 0, bisectLeft: bisectSteps, points: [] }));
    const measurePoint = async (pending: { state: TargetState; rate: number }[]): Promise<FanoutPoint[]> => {
      const runs = pending.map(() => [] as FanoutRun[]);
      const crashesBefore = pending.map((p) => p.state.rig.crashes);
      for (let rep = 0; rep < repeats; rep++) {
        for (const [i, p] of pending.entries()) {
          await p.state.rig.ensure();
          const run = await measureRun(p.state.rig, p.rate, warmupMs, measureMs, allRigs);
          runs[i]?.push(run);
          log(
            `${p.state.rig.spec.name} ${p.rate} msg/s run ${rep + 1}/${repeats}: ${Math.round(run.deliveriesPerSec)} deliveries/s, ` +
              `ratio ${run.deliveredRatio.toFixed(3)}, p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(1)} ms, ` +
              `cpu relay ${run.relayCores.toFixed(2)} redis ${run.redisCores.toFixed(2)} client ${run.clientCores.toFixed(2)} cores (${(run.clientSystemShare * 100).toFixed(0)} % kernel), closed ${run.closedSubscribers}, machine busy ${(run.machineBusy * 100).toFixed(0)} %`,
          );
        }
      }
      return pending.map((p, i) => summarise(p.rate, runs[i] ?? [], p.state.rig.crashes - (crashesBefore[i] ?? 0), minRatio, maxP99));
    };

    const maxRounds = opts.rates.length + bisectSteps + 1;
    for (let round = 0; round < maxRounds; round++) {
      const pending = states.filter((s) => s.phase !== 'done').map((state) => ({ state, rate: nextRate(state, opts.rates) }));
      if (pending.length === 0) break;
      const points = await measurePoint(pending);
      for (const [i, p] of pending.entries()) {
        const point = points[i];
        p.state.points.push(point);
        advance(p.state, point, opts.rates.length);
      }
    }

    const half = opts.halfSaturationStep ?? true;
    const halfPoints = new Map<TargetState, FanoutPoint>();
    if (half) {
      const pending = states.filter((s) => s.lo > 0).map((state) => ({ state, rate: roundRate(state.lo / 2) }));
      if (pending.length > 0) {
        const points = await measurePoint(pending);
        for (const [i, p] of pending.entries()) halfPoints.set(p.state, points[i]);
      }
    }

    return {
      instances,
      subscribers,
      payloadBytes: 64,
      repeats,
      warmupMs,
      measureMs,
      pinning,
      targets: states.map((s) => {
        const sat = s.points.filter((p) => p.keptUp && p.rate === s.lo)[0];
        return {
          name: s.rig.spec.name,
          points: [...s.points].sort((a, b) => a.rate - b.rate),
          saturationRate: s.lo,
          saturationDeliveriesPerSec: sat ? sat.deliveriesPerSec : 0,
          saturationIsLowerBound: s.hi === 0,
          halfSaturation: halfPoints.get(s),
        };
      }),
    };
  });
}

function nextRate(s: TargetState, rates: readonly number[]): number {
  return s.phase === 'climb' ? rates[s.ladderIndex] : roundRate((s.lo + s.hi) / 2);
}

function advance(s: TargetState, point: FanoutPoint, ladderLength: number): void {
  if (s.phase === 'climb') {
    if (point.keptUp) {
      s.lo = point.rate;
      s.ladderIndex++;
      if (s.ladderIndex >= ladderLength) s.phase = 'done';
    } else {
      s.hi = point.rate;
      s.phase = s.bisectLeft > 0 ? 'bisect' : 'done';
    }
  } else if (s.phase === 'bisect') {
    if (point.keptUp) s.lo = point.rate;
    else s.hi = point.rate;
    s.bisectLeft--;
    const mid = roundRate((s.lo + s.hi) / 2);
    if (s.bisectLeft <= 0 || mid === s.lo || mid === s.hi) s.phase = 'done';
  }
}

function roundRate(r: number): number {
  return r >= 100 ? Math.round(r / 10) * 10 : Math.max(1, Math.round(r));
}

async function measureRun(rig: TargetRig, rate: number, warmupMs: number, measureMs: number, allRigs: readonly TargetRig[]): Promise<FanoutRun> {
  const sink = rig.sink;
  const publisher = rig.publisher as RatePublisher;
  const members = rig.subscribers.length;
  const pids = rig.pids();
  const redisPid = rig.redis.process.pid;
  sink.measuring = false;
  // A backlog left by an overloaded run (of this target or another: they share Redis, the servers' CPU and the
  // generator) may still be worked off after that run's drain gave up, also by relays whose subscribers were closed:
  // let it finish first, so this run neither counts its deliveries nor competes with that work.
  await waitSettled(allRigs);
  const deliveredAtStart = sink.delivered;
  const sentAtStart = publisher.sent;
  publisher.start(rate);
  await pause(warmupMs);

  sink.latency.reset();
  sink.measuring = true;
  const t0 = performance.now();
  const d0 = sink.delivered;
  const s0 = publisher.sent;
  const relayCpu0 = cpuSecondsOf(pids);
  const redisCpu0 = cpuSecondsOf([redisPid]);
  const client0 = process.cpuUsage();
  const machine0 = machineCpu();
  await pause(measureMs);
  const t1 = performance.now();
  const d1 = sink.delivered;
  const s1 = publisher.sent;
  const relayCpu1 = cpuSecondsOf(pids);
  const redisCpu1 = cpuSecondsOf([redisPid]);
  const client1 = process.cpuUsage(client0);
  const machine1 = machineCpu();
  sink.measuring = false;
  publisher.stop();

  // Drain: wait until everything sent arrived, or nothing arrived for a while (the rest is lost).
  const expectedTotal = (publisher.sent - sentAtStart) * members;
  await waitQuiet(changes(() => sink.delivered), 10, () => sink.delivered - deliveredAtStart >= expectedTotal);

  const seconds = (t1 - t0) / 1000;
  const deliveries = d1 - d0;
  const expected = (s1 - s0) * members;
  const relaySeconds = relayCpu1 - relayCpu0;
  return {
    publishedPerSec: (s1 - s0) / seconds,
    deliveriesPerSec: deliveries / seconds,
    deliveredRatio: expected > 0 ? deliveries / expected : 0,
    p50Ms: sink.latency.quantile(0.5),
    p99Ms: sink.latency.quantile(0.99),
    maxMs: sink.latency.max,
    serverCpuPer100k: deliveries > 0 ? relaySeconds / (deliveries / 100_000) : Number.NaN,
    relayCores: relaySeconds / seconds,
    redisCores: (redisCpu1 - redisCpu0) / seconds,
    clientCores: (client1.user + client1.system) / 1e6 / seconds,
    clientSystemShare: client1.user + client1.system > 0 ? client1.system / (client1.user + client1.system) : 0,
    machineBusy: (machine1.busy - machine0.busy) / Math.max(1, machine1.total - machine0.total),
    lost: Math.max(0, expectedTotal - (sink.delivered - deliveredAtStart)),
    closedSubscribers: rig.subscribers.filter((s) => !s.isOpen()).length,
  };
}

/**
 * Polls every `intervalMs` until `done()` holds or `active()` (called once per poll: did anything happen since the
 * last poll?) has been false for DRAIN_QUIET_MS; gives up after DRAIN_TIMEOUT_MS.
 */
async function waitQuiet(active: () => boolean, intervalMs: number, done: () => boolean = () => false): Promise<void> {
  let quietSince = performance.now();
  await pollUntil(
    () => {
      const now = performance.now();
      if (active()) quietSince = now;
      return done() || now - quietSince >= DRAIN_QUIET_MS;
    },
    DRAIN_TIMEOUT_MS,
    intervalMs,
  );
}

/** Whether `read()` changed since the last call. */
function changes(read: () => number): () => boolean {
  let last = read();
  return () => {
    const now = read();
    const changed = now !== last;
    last = now;
    return changed;
  };
}

/** Waits until no rig's subscribers receive anything and all servers together use under SETTLED_CORES of CPU. */
async function waitSettled(rigs: readonly TargetRig[]): Promise<void> {
  const pids = [...new Set(rigs.flatMap((r) => [...r.pids(), r.redis.process.pid]))];
  const delivering = changes(() => rigs.reduce((n, r) => n + r.sink.delivered, 0));
  let last = { at: performance.now(), cpu: cpuSecondsOf(pids) };
  const busy = (): boolean => {
    const now = { at: performance.now(), cpu: cpuSecondsOf(pids) };
    const cores = (now.cpu - last.cpu) / Math.max(0.001, (now.at - last.at) / 1000);
    last = now;
    return cores > SETTLED_CORES;
  };
  // CPU time moves in 10 ms ticks: over 100 ms one tick is 0.1 core, under the threshold.
  await waitQuiet(() => {
    const moved = delivering();
    return busy() || moved;
  }, 100);
}

function summarise(rate: number, runs: FanoutRun[], crashes: number, minRatio: number, maxP99: number): FanoutPoint {
  const m = (f: (r: FanoutRun) => number): number => median(runs.map(f));
  const point = {
    rate,
    runs: runs.length,
    publishedPerSec: m((r) => r.publishedPerSec),
    deliveriesPerSec: m((r) => r.deliveriesPerSec),
    deliveredRatio: m((r) => r.deliveredRatio),
    p50Ms: m((r) => r.p50Ms),
    p99Ms: m((r) => r.p99Ms),
    maxMs: maxOf(runs.map((r) => r.maxMs)),
    serverCpuPer100k: m((r) => r.serverCpuPer100k),
    relayCores: m((r) => r.relayCores),
    redisCores: m((r) => r.redisCores),
    clientCores: m((r) => r.clientCores),
    clientSystemShare: m((r) => r.clientSystemShare),
    machineBusy: m((r) => r.machineBusy),
    lost: runs.reduce((a, r) => a + r.lost, 0),
    closedSubscribers: runs.reduce((a, r) => a + r.closedSubscribers, 0),
    crashes,
  };
  // Published rate is checked too: a generator that cannot reach the offered rate has not measured it.
  const keptUp =
    crashes === 0 &&
    point.deliveredRatio >= minRatio &&
    point.p99Ms <= maxP99 &&
    point.publishedPerSec >= 0.95 * rate;
  return { ...point, keptUp };
}

function maxOf(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length === 0 ? Number.NaN : Math.max(...finite);
}
