import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { LatencyHistogram } from './lib/histogram';
import { cpuSecondsOf } from './lib/proc-stats';
import type { RawMember } from './lib/raw-subscriber';
import type { BenchRedis, BenchRelay, BenchTarget } from './lib/servers';
import { median, pause, pollUntil } from './lib/stats';
import { connectSpread, expectProbeDelivered, startInstances, withSharedRedis, type RateRunMeasures, type TargetRunOptions } from './lib/target-rigs';
import { timestampPayload } from './lib/ws-load';

/**
 * The many-rooms workload (issue 16): `rooms` rooms of `membersPerRoom` members spread over two instances of each
 * target, every member publishing to its own room (no `id`, so protocol 2 sends no ack; the floor never acks those).
 * The offered publish rate climbs until delivery falls behind, then the gap is bisected; runs of the targets at the same
 * rate are interleaved. Redis commands per delivery come from `INFO stats` (`total_commands_processed` counts an
 * EVALSHA and every command its script runs). A last long run at each relay target's saturation rate spans more than one
 * heartbeat interval, so a heartbeat spike would show in its worst one-second p99.
 */
export interface ManyRoomsOptions extends TargetRunOptions {
  readonly targets: readonly BenchTarget[];
  readonly rooms: number;
  readonly membersPerRoom: number;
  /** Publish rates (msg/s, all members together) tried in order until one falls behind. */
  readonly rates: readonly number[];
  readonly bisectSteps: number;
  readonly repeats: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Length of the heartbeat run (0: none); longer than RELAY_PING_INTERVAL_MS (25 s) to span a heartbeat. */
  readonly heartbeatRunMs: number;
}

export interface ManyRoomsRun extends RateRunMeasures {
  readonly rate: number;
  /** Worst p99 of any one-second slice of the window. */
  readonly worstSecondP99Ms: number;
  readonly redisCpuPer100k: number;
  readonly redisCommandsPerDelivery: number;
  readonly keptUp: boolean;
}

export interface ManyRoomsTargetResult {
  readonly name: string;
  readonly points: ManyRoomsRun[];
  /** Highest publish rate that kept up (msg/s); 0 if none did. */
  readonly saturationRate: number;
  readonly saturation?: ManyRoomsRun;
  readonly saturationIsLowerBound: boolean;
  readonly heartbeat?: ManyRoomsRun & { readonly windowMs: number };
}

export interface ManyRoomsResult {
  readonly rooms: number;
  readonly membersPerRoom: number;
  readonly repeats: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly targets: ManyRoomsTargetResult[];
}

const MIN_RATIO = 0.95;
const MAX_P99_MS = 500;
const DRAIN_TIMEOUT_MS = 15_000;
/** Skip a member whose socket has this much unsent: the generator never queues without bound. */
const MAX_MEMBER_BACKLOG = 64 * 1024;
const run = promisify(execFile);

/** Counts deliveries and latencies (overall and per second of the window) without allocation per frame. */
class Sink {
  delivered = 0;
  measuring = false;
  readonly latency = new LatencyHistogram();
  slices: LatencyHistogram[] = [];
  sliceStart = 0;

  onFrame = (buf: Buffer, start: number, end: number): void => {
    this.delivered++;
    if (!this.measuring) return;
    const at = buf.indexOf('"data":"', start);
    const from = at + 8;
    if (at < 0 || from + 13 > end) return;
    let us = 0;
    for (let i = from; i < from + 13; i++) us = us * 10 + ((buf[i] ?? 48) - 48);
    const now = performance.now();
    const ms = now - us / 1000;
    this.latency.record(ms);
    const slice = Math.floor((now - this.sliceStart) / 1000);
    if (slice >= 0 && slice < this.slices.length) this.slices[slice]?.record(ms);
  };
}

class Rig {
  relays: BenchRelay[] = [];
  members: RawMember[] = [];
  frames: string[] = [];
  readonly sink = new Sink();
  sent = 0;
  readonly membersPerRoom: number;
  #next = 0;

  constructor(
    readonly spec: BenchTarget,
    readonly redis: BenchRedis,
    private readonly opts: ManyRoomsOptions,
  ) {
    this.membersPerRoom = opts.membersPerRoom;
  }

  async start(): Promise<void> {
    this.relays = await startInstances(this.spec, this.redis, 2, this.opts.pinning?.servers, `${this.spec.name}-many`);
    const { rooms, membersPerRoom } = this.opts;
    const query = this.spec.wsQuery ? `?${this.spec.wsQuery}` : '';
    this.members = await connectSpread(this.relays, rooms * membersPerRoom, (i) => roomOf(Math.floor(i / membersPerRoom)), this.sink.onFrame, 0, query);
    this.frames = this.members.map((_, i) => `{"type":"publish","room":"${roomOf(Math.floor(i / membersPerRoom))}","data":"`);
    // One message per room must reach all its members: every instance's subscriptions are live.
    const before = this.sink.delivered;
    for (let r = 0; r < rooms; r++) this.publishFrom(r * membersPerRoom);
    await expectProbeDelivered(this.spec.name, this.relays, () => this.sink.delivered - before, rooms * membersPerRoom, 'members');
  }

  publishFrom(i: number): boolean {
    const m = this.members[i];
    if (m === undefined || m.backlog() > MAX_MEMBER_BACKLOG || !m.isOpen()) return false;
    m.send(`${this.frames[i]}${timestampPayload()}"}`);
    this.sent++;
    return true;
  }

  /** Publishes at `rate` msg/s, members in turn, until the returned stop function is called. */
  pace(rate: number): () => void {
    const t0 = performance.now();
    const base = this.sent;
    const maxPerTick = Math.max(1, Math.ceil(rate / 20));
    let timer: NodeJS.Timeout | null = null;
    const tick = (): void => {
      const due = Math.min(maxPerTick, Math.floor(((performance.now() - t0) * rate) / 1000) - (this.sent - base));
      for (let k = 0; k < due; k++) {
        this.#next = (this.#next + 1) % this.members.length;
        this.publishFrom(this.#next);
      }
      timer = setTimeout(tick, 1);
    };
    timer = setTimeout(tick, 1);
    return () => {
      if (timer) clearTimeout(timer);
    };
  }

  pids(): number[] {
    return this.relays.map((r) => r.process.pid);
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
    this.members = [];
    await Promise.all(this.relays.map((r) => r.stop()));
    this.relays = [];
  }
}

function roomOf(r: number): string {
  return `many-${r}`;
}

async function redisCommands(redis: BenchRedis): Promise<number> {
  const { stdout } = await run('redis-cli', ['-p', String(redis.port), 'INFO', 'stats']);
  const match = /total_commands_processed:(\d+)/.exec(stdout);
  if (match === null) throw new Error(`redis-cli INFO stats has no total_commands_processed: ${stdout.slice(0, 200)}`);
  return Number(match[1]);
}

async function measure(rig: Rig, rate: number, warmupMs: number, measureMs: number): Promise<ManyRoomsRun> {
  const sink = rig.sink;
  const members = rig.membersPerRoom;
  const stop = rig.pace(rate);
  await pause(warmupMs);
  // Commands are counted over a slightly longer span than the window (INFO is a round trip), with the deliveries of that span.
  const cmd0 = await redisCommands(rig.redis);
  const dc0 = sink.delivered;
  sink.latency.reset();
  sink.slices = Array.from({ length: Math.ceil(measureMs / 1000) }, () => new LatencyHistogram());
  const t0 = performance.now();
  sink.sliceStart = t0;
  sink.measuring = true;
  const d0 = sink.delivered;
  const s0 = rig.sent;
  const cpu0 = cpuSecondsOf(rig.pids());
  const redisCpu0 = cpuSecondsOf([rig.redis.process.pid]);
  await pause(measureMs);
  const t1 = performance.now();
  const d1 = sink.delivered;
  const s1 = rig.sent;
  const cpu1 = cpuSecondsOf(rig.pids());
  const redisCpu1 = cpuSecondsOf([rig.redis.process.pid]);
  sink.measuring = false;
  const cmd1 = await redisCommands(rig.redis);
  const dc1 = sink.delivered;
  stop();
  // Drain: everything sent arrives, or nothing more does for a while.
  const expectedTotal = rig.sent * members;
  let last = sink.delivered;
  let quietSince = performance.now();
  await pollUntil(() => {
    if (sink.delivered !== last) {
      last = sink.delivered;
      quietSince = performance.now();
    }
    return sink.delivered >= expectedTotal || performance.now() - quietSince > 300;
  }, DRAIN_TIMEOUT_MS);
  sink.delivered = rig.sent * members; // lost deliveries must not count in the next run's drain
  const seconds = (t1 - t0) / 1000;
  const deliveries = d1 - d0;
  const expected = (s1 - s0) * members;
  const per100k = (cpu: number): number => (deliveries > 0 ? cpu / (deliveries / 100_000) : Number.NaN);
  const p99 = sink.latency.quantile(0.99);
  const worst = Math.max(...sink.slices.filter((h) => h.count > 0).map((h) => h.quantile(0.99)));
  const publishedPerSec = (s1 - s0) / seconds;
  const deliveredRatio = expected > 0 ? deliveries / expected : 0;
  return {
    rate,
    publishedPerSec,
    deliveriesPerSec: deliveries / seconds,
    deliveredRatio,
    p50Ms: sink.latency.quantile(0.5),
    p99Ms: p99,
    maxMs: sink.latency.max,
    worstSecondP99Ms: worst,
    serverCpuPer100k: per100k(cpu1 - cpu0),
    redisCpuPer100k: per100k(redisCpu1 - redisCpu0),
    redisCommandsPerDelivery: dc1 > dc0 ? (cmd1 - cmd0) / (dc1 - dc0) : Number.NaN,
    keptUp: deliveredRatio >= MIN_RATIO && p99 <= MAX_P99_MS && publishedPerSec >= 0.95 * rate && rig.relays.every((r) => !r.process.exited()),
  };
}

function summarise(rate: number, runs: ManyRoomsRun[]): ManyRoomsRun {
  const m = (f: (r: ManyRoomsRun) => number): number => median(runs.map(f));
  return {
    rate,
    publishedPerSec: m((r) => r.publishedPerSec),
    deliveriesPerSec: m((r) => r.deliveriesPerSec),
    deliveredRatio: m((r) => r.deliveredRatio),
    p50Ms: m((r) => r.p50Ms),
    p99Ms: m((r) => r.p99Ms),
    maxMs: Math.max(...runs.map((r) => r.maxMs)),
    worstSecondP99Ms: Math.max(...runs.map((r) => r.worstSecondP99Ms)),
    serverCpuPer100k: m((r) => r.serverCpuPer100k),
    redisCpuPer100k: m((r) => r.redisCpuPer100k),
    redisCommandsPerDelivery: m((r) => r.redisCommandsPerDelivery),
    keptUp: runs.filter((r) => r.keptUp).length * 2 > runs.length,
  };
}

export async function runManyRooms(opts: ManyRoomsOptions): Promise<ManyRoomsResult> {
  const log = opts.log ?? (() => undefined);
  if (opts.rates.length === 0) throw new Error('runManyRooms: `rates` is empty; give at least one publish rate in msg/s');
  const makeRigs = (redis: BenchRedis): Rig[] => opts.targets.map((spec) => new Rig(spec, redis, opts));
  return withSharedRedis(opts.pinning ?? null, makeRigs, async (rigs) => {
    const state = rigs.map(() => ({ lo: 0, hi: 0, ladder: 0, bisectLeft: opts.bisectSteps, done: false, points: [] as ManyRoomsRun[] }));
    for (const rig of rigs) {
      log(`many rooms: ${rig.spec.name}: ${opts.rooms} rooms × ${opts.membersPerRoom} members over 2 instances`);
      await rig.start();
    }
    const measurePoint = async (rig: Rig, rate: number, windowMs: number): Promise<ManyRoomsRun> => {
      const runs: ManyRoomsRun[] = [];
      for (let rep = 0; rep < (windowMs === opts.measureMs ? opts.repeats : 1); rep++) {
        const r = await measure(rig, rate, opts.warmupMs, windowMs);
        runs.push(r);
        log(
          `many rooms ${rig.spec.name} ${rate} msg/s${windowMs === opts.measureMs ? ` run ${rep + 1}/${opts.repeats}` : ` (${windowMs / 1000} s)`}: ` +
            `${Math.round(r.deliveriesPerSec)} deliveries/s, ratio ${r.deliveredRatio.toFixed(3)}, p99 ${r.p99Ms.toFixed(1)} ms ` +
            `(worst second ${r.worstSecondP99Ms.toFixed(1)} ms), ${r.redisCommandsPerDelivery.toFixed(2)} redis commands/delivery`,
        );
      }
      return summarise(rate, runs);
    };
    for (let round = 0; round < opts.rates.length + opts.bisectSteps + 1; round++) {
      const pending = state.map((s, i) => ({ s, rig: rigs[i] })).filter((p) => !p.s.done);
      if (pending.length === 0) break;
      for (const { s, rig } of pending) {
        const bisecting = s.hi > 0;
        const rate = bisecting ? Math.round((s.lo + s.hi) / 20) * 10 : (opts.rates[s.ladder] ?? 0);
        const point = await measurePoint(rig, rate, opts.measureMs);
        s.points.push(point);
        if (point.keptUp) s.lo = rate;
        else s.hi = rate;
        if (bisecting) s.bisectLeft--;
        else if (point.keptUp) s.ladder++;
        const mid = Math.round((s.lo + s.hi) / 20) * 10;
        s.done =
          s.hi === 0 ? s.ladder >= opts.rates.length : s.lo === 0 || s.bisectLeft <= 0 || mid === s.lo || mid === s.hi;
      }
    }
    const heartbeats = new Map<Rig, ManyRoomsRun>();
    if (opts.heartbeatRunMs > 0) {
      for (const [i, rig] of rigs.entries()) {
        const s = state[i];
        if (!rig.spec.name.startsWith('relay') || s.lo === 0) continue;
        heartbeats.set(rig, await measurePoint(rig, s.lo, opts.heartbeatRunMs));
      }
    }
    return {
      rooms: opts.rooms,
      membersPerRoom: opts.membersPerRoom,
      repeats: opts.repeats,
      warmupMs: opts.warmupMs,
      measureMs: opts.measureMs,
      targets: rigs.map((rig, i) => {
        const s = state[i];
        const hb = heartbeats.get(rig);
        return {
          name: rig.spec.name,
          points: [...s.points].sort((a, b) => a.rate - b.rate),
          saturationRate: s.lo,
          saturation: s.points.find((p) => p.keptUp && p.rate === s.lo),
          saturationIsLowerBound: s.hi === 0,
          ...(hb ? { heartbeat: { ...hb, windowMs: opts.heartbeatRunMs } } : {}),
        };
      }),
    };
  });
}

/** Issue 16's many-rooms targets, checked against the floor measured in the same run. */
export const MANY_ROOMS_TARGETS = { rateVsFloor: 1, commandsPerDelivery: 0.75 } as const;

export interface ManyRoomsCheck {
  readonly target: string;
  readonly measured: string;
  readonly pass: boolean | null;
}

export function manyRoomsChecks(result: ManyRoomsResult | undefined): ManyRoomsCheck[] {
  const relay = result?.targets.find((t) => t.name.startsWith('relay'));
  const floor = result?.targets.find((t) => t.name === 'floor');
  const rateTarget = `many rooms: relay (recovery on) sustains ≥ ${MANY_ROOMS_TARGETS.rateVsFloor} × the floor's rate`;
  const cmdTarget = `many rooms: ≤ ${MANY_ROOMS_TARGETS.commandsPerDelivery} Redis commands per delivery`;
  const hbTarget = 'many rooms: no heartbeat spike (worst 1 s p99 ≤ 500 ms over a window spanning a ping interval)';
  if (!relay || !floor) return [rateTarget, cmdTarget, hbTarget].map((target) => ({ target, measured: 'not measured', pass: null }));
  const ratio = floor.saturationRate > 0 ? relay.saturationRate / floor.saturationRate : Number.NaN;
  const bound = relay.saturationIsLowerBound || floor.saturationIsLowerBound ? ' (a side kept up at every rate tried: its saturation is higher)' : '';
  const undecided = (relay.saturationIsLowerBound && ratio < 1) || (floor.saturationIsLowerBound && ratio >= 1) || !Number.isFinite(ratio);
  // At the saturation point; when no point kept up (an overloaded machine), at the lowest rate measured, said so.
  const cmdPoint = relay.saturation ?? relay.points[0];
  const floorPoint = floor.saturation ?? floor.points[0];
  const cmd = cmdPoint?.redisCommandsPerDelivery ?? Number.NaN;
  const hb = relay.heartbeat;
  return [
    {
      target: rateTarget,
      measured: `${fmt(relay.saturationRate)} vs ${fmt(floor.saturationRate)} msg/s${Number.isFinite(ratio) ? ` = ${ratio.toFixed(2)} × floor` : ' (the floor kept up at no rate)'}${bound}`,
      pass: undecided ? null : ratio >= MANY_ROOMS_TARGETS.rateVsFloor,
    },
    {
      target: cmdTarget,
      measured: Number.isFinite(cmd)
        ? `${cmd.toFixed(3)} at ${fmt(cmdPoint?.rate ?? Number.NaN)} msg/s${relay.saturation ? '' : ' (no point kept up)'} (floor ${(floorPoint?.redisCommandsPerDelivery ?? Number.NaN).toFixed(3)})`
        : 'not measured',
      pass: Number.isFinite(cmd) ? cmd <= MANY_ROOMS_TARGETS.commandsPerDelivery : null,
    },
    hb
      ? { target: hbTarget, measured: `${hb.worstSecondP99Ms.toFixed(1)} ms worst second, p99 ${hb.p99Ms.toFixed(1)} ms over ${hb.windowMs / 1000} s at ${fmt(hb.rate)} msg/s`, pass: hb.worstSecondP99Ms <= MAX_P99_MS && hb.keptUp }
      : { target: hbTarget, measured: 'not measured', pass: null },
  ];
}

export function manyRoomsSection(r: ManyRoomsResult): string[] {
  const out = ['## Many rooms', ''];
  out.push(
    `One redis-server, 2 instances of each target, ${fmt(r.rooms)} rooms of ${r.membersPerRoom} members (members alternate between the ` +
      'instances), every member publishing 64-byte timestamped messages to its own room without an `id` (the relay target connects ' +
      'with `?protocol=2`, so no ack; the floor never acks those). The offered rate (messages/s, all members together) climbs until ' +
      `a point falls behind, then the gap is bisected; each point is the median of ${r.repeats} run(s) of ${r.warmupMs} ms warm-up + ` +
      `${r.measureMs} ms measured, targets interleaved. A point keeps up when delivered/expected ≥ 0.95, p99 ≤ 500 ms, the generator ` +
      'reached 95 % of the rate and no process exited. Redis commands come from `INFO stats` `total_commands_processed` (an EVALSHA ' +
      'and every command its script runs). The heartbeat run holds the saturation rate for longer than RELAY_PING_INTERVAL_MS (25 s).',
    '',
  );
  for (const t of r.targets) {
    out.push(`### ${t.name}`, '');
    out.push(`Saturation: ${fmt(t.saturationRate)} msg/s${t.saturationIsLowerBound ? ' (kept up at every rate tried)' : ''}.`, '');
    out.push('| rate (msg/s) | published/s | deliveries/s | delivered | p50 | p99 | worst 1 s p99 | server CPU s / 100k deliveries | Redis CPU s / 100k | Redis commands / delivery | kept up |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|');
    const row = (p: ManyRoomsRun, label: string): string =>
      `| ${label} | ${fmt(p.publishedPerSec)} | ${fmt(p.deliveriesPerSec)} | ${(p.deliveredRatio * 100).toFixed(1)} % | ${p.p50Ms.toFixed(1)} ms | ` +
      `${p.p99Ms.toFixed(1)} ms | ${p.worstSecondP99Ms.toFixed(1)} ms | ${p.serverCpuPer100k.toFixed(2)} | ${p.redisCpuPer100k.toFixed(2)} | ` +
      `${p.redisCommandsPerDelivery.toFixed(3)} | ${p.keptUp ? 'yes' : 'no'} |`;
    for (const p of t.points) out.push(row(p, fmt(p.rate)));
    if (t.heartbeat) out.push(row(t.heartbeat, `${fmt(t.heartbeat.rate)} (heartbeat run, ${t.heartbeat.windowMs / 1000} s)`));
    out.push('');
  }
  return out;
}

function fmt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}
