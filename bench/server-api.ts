/**
 * Server API benchmark (issue 17): a backend publishes through `POST /api/publish` at a fixed rate, alternating between
 * two relays over one redis-server, to one room whose members are spread over both relays. Reports errors, the request
 * latency (send to response) and the end-to-end delivery latency (send to a member reading the frame), with message
 * recovery on, so every publish goes through the history script as a client publish does.
 */
import { execFile, fork } from 'node:child_process';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../app/paths';
import type { PublisherMessage, PublisherPlan, PublisherResult } from './api-publisher';
import { pinSelf, type CpuPinning } from './lib/cpu-pinning';
import { cpuSecondsOf } from './lib/proc-stats';
import { connectRawMember } from './lib/raw-subscriber';
import { startBenchRedis, startBenchRelay, type BenchRedis, type BenchRelay, type BenchTarget } from './lib/servers';
import { pollUntil } from './lib/stats';
import { DeliverySink, type LoadSocket } from './lib/ws-load';

const API_KEY = 'bench-server-api-key-0123456789abcdef';
const ROOM = 'bench-api';
/** Requests in flight per relay at most; beyond it the publisher counts the request as an error (the relay is not keeping up). */
const MAX_IN_FLIGHT = 256;
/** How long the last deliveries may take to arrive after the last response. */
const DRAIN_TIMEOUT_MS = 10_000;
/** How long the publisher process may take to start, beyond the run itself. */
const PUBLISHER_START_MS = 30_000;
/** The default warm-up: the relays' settling time measured on the bench machine (bench/findings.md), with margin. */
export const WARMUP_MS = 15_000;
const PUBLISHER_SCRIPT = join(REPO_ROOT, 'bench', 'api-publisher.ts');
const run = promisify(execFile);

export interface ServerApiBenchOptions {
  /** The bundled relay (its env: recovery on). */
  readonly target: BenchTarget;
  /** Members of the room, spread evenly over the two relays. @default 200 */
  readonly members: number;
  /** Requests per second, over both relays. @default 1000 */
  readonly rate: number;
  readonly durationMs: number;
  /**
   * Published before the measured window at the same rate, timed apart. Freshly started relays take about 10 s at this
   * load to settle (V8 compiling the hot code on the same CPU, the young generation growing to its size): the target
   * is about the relays once they have. @default WARMUP_MS
   */
  readonly warmupMs?: number;
  /** The generator and the servers on separate CPUs, as in the fan-out (see lib/cpu-pinning.ts). @default none */
  readonly pinning?: CpuPinning | null;
  readonly log: (line: string) => void;
}

/** CPU use over the measured window, in cores (1 = one CPU all the time). */
export interface ServerApiCpu {
  /** The two relays together. */
  readonly relays: number;
  readonly redis: number;
  /** The process that reads the members' deliveries. */
  readonly readers: number;
  /** The process that sends the requests. */
  readonly publisher: number;
}

export interface ServerApiBenchResult {
  readonly members: number;
  readonly rate: number;
  readonly durationSec: number;
  readonly warmupSec: number;
  readonly requests: number;
  /** Requests answered with anything but 200, failed, or refused for too many in flight. */
  readonly errors: number;
  /** Up to five distinct error reasons. */
  readonly errorSamples: readonly string[];
  readonly achievedRate: number;
  readonly expectedDeliveries: number;
  readonly deliveries: number;
  readonly requestP50Ms: number;
  readonly requestP99Ms: number;
  readonly requestMaxMs: number;
  /** The warm-up's request latency (not judged). */
  readonly warmupP50Ms: number;
  readonly warmupP99Ms: number;
  readonly warmupMaxMs: number;
  readonly deliveryP50Ms: number;
  readonly deliveryP99Ms: number;
  readonly deliveryMaxMs: number;
  readonly cpu: ServerApiCpu;
  /** Event-loop delay p99 of the readers' and of the publisher's process over the measured window. */
  readonly readersLoopDelayP99Ms: number;
  readonly publisherLoopDelayP99Ms: number;
  /** Script calls (EVALSHA) and all Redis commands per measured request: below 1 script call, requests shared a call. */
  readonly scriptCallsPerRequest: number;
  readonly redisCommandsPerRequest: number;
}

/** Redis's count of EVALSHA calls and of all commands (a script's commands included) so far. */
async function redisCounts(redis: BenchRedis): Promise<{ scripts: number; commands: number }> {
  const { stdout } = await run('redis-cli', ['-p', String(redis.port), 'INFO', 'all']);
  const scripts = /cmdstat_evalsha:calls=(\d+)/.exec(stdout);
  const commands = /total_commands_processed:(\d+)/.exec(stdout);
  if (commands === null) throw new Error(`redis-cli INFO all has no total_commands_processed: ${stdout.slice(0, 200)}`);
  return { scripts: Number(scripts?.[1] ?? 0), commands: Number(commands[1]) };
}

/** The target of the issue: p99 request latency on loopback. */
export const SERVER_API_P99_TARGET_MS = 25;

export async function runServerApiBench(opts: ServerApiBenchOptions): Promise<ServerApiBenchResult> {
  const { log } = opts;
  const warmupMs = opts.warmupMs ?? WARMUP_MS;
  const pinning = opts.pinning ?? null;
  const redis = await startBenchRedis(pinning?.servers);
  // The publisher, forked below, inherits this CPU affinity.
  const unpin = pinning ? pinSelf(pinning.generator) : () => undefined;
  const relays: BenchRelay[] = [];
  const members: LoadSocket[] = [];
  const publisher = fork(PUBLISHER_SCRIPT, [], { cwd: REPO_ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    for (const name of ['api-a', 'api-b']) {
      relays.push(await startBenchRelay(name, opts.target, { REDIS_URL: redis.url, RELAY_API_KEY: API_KEY, RELAY_CHANNEL_PREFIX: 'bench-api' }, pinning?.servers));
    }
    const sink = new DeliverySink();
    for (let i = 0; i < opts.members; i++) members.push(await connectRawMember(relays[i % relays.length].wsUrl, ROOM, sink.onFrame));
    log(`server API: ${opts.members} members over ${relays.length} relays, ${opts.rate} requests/s for ${opts.durationMs / 1000} s`);
    const warm = Math.round((opts.rate * warmupMs) / 1000);
    const total = warm + Math.round((opts.rate * opts.durationMs) / 1000);
    const plan: PublisherPlan = {
      ports: relays.map((r) => r.port),
      names: relays.map((r) => r.name),
      apiKey: API_KEY,
      room: ROOM,
      rate: opts.rate,
      warm,
      total,
      maxInFlight: MAX_IN_FLIGHT,
      drainTimeoutMs: DRAIN_TIMEOUT_MS,
      parentClockBaseNs: String(process.hrtime.bigint() - BigInt(Math.round(performance.now() * 1e6))),
    };
    const serverPids = relays.map((r) => r.process.pid);
    const loop = monitorEventLoopDelay({ resolution: 1 });
    let window: { readonly at: number; readonly own: NodeJS.CpuUsage; readonly relays: number; readonly redis: number } | undefined;
    let countsBefore: Promise<{ scripts: number; commands: number }> | undefined;
    const limitMs = opts.durationMs + warmupMs + DRAIN_TIMEOUT_MS + PUBLISHER_START_MS;
    const done = new Promise<PublisherResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the API publisher did not finish within ${Math.round(limitMs / 1000)} s`)), limitMs);
      publisher.on('message', (m: PublisherMessage) => {
        if (m.type === 'measuring') {
          sink.measuring = true;
          loop.enable();
          window = { at: performance.now(), own: process.cpuUsage(), relays: cpuSecondsOf(serverPids), redis: cpuSecondsOf([redis.process.pid]) };
          countsBefore = redisCounts(redis);
        } else {
          clearTimeout(timer);
          resolve(m.result);
        }
      });
      publisher.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the API publisher (bench/api-publisher.ts) exited with ${String(code)} before its result`));
      });
    });
    publisher.send(plan);
    const p = await done;
    loop.disable();
    const seconds = window === undefined ? Number.NaN : (performance.now() - window.at) / 1000;
    const own = process.cpuUsage(window?.own);
    const cpu: ServerApiCpu = {
      relays: (cpuSecondsOf(serverPids) - (window?.relays ?? 0)) / seconds,
      redis: (cpuSecondsOf([redis.process.pid]) - (window?.redis ?? 0)) / seconds,
      readers: (own.user + own.system) / 1e6 / seconds,
      publisher: p.cpuCores,
    };
    // Counted from the start of the window to the last answer: the requests of the window and none of the warm-up's.
    const [before, after] = await Promise.all([countsBefore ?? redisCounts(redis), redisCounts(redis)]);
    // Every member gets every publish, warm-up included (the sink counts them all).
    const expected = (total - p.errors) * opts.members;
    await pollUntil(() => sink.delivered >= expected, DRAIN_TIMEOUT_MS);
    const result: ServerApiBenchResult = {
      members: opts.members,
      rate: opts.rate,
      durationSec: opts.durationMs / 1000,
      warmupSec: warmupMs / 1000,
      requests: total - warm,
      errors: p.errors,
      errorSamples: p.errorSamples,
      achievedRate: (total - warm) / p.sendSec,
      expectedDeliveries: expected,
      deliveries: sink.delivered,
      requestP50Ms: p.requestP50Ms,
      requestP99Ms: p.requestP99Ms,
      requestMaxMs: p.requestMaxMs,
      warmupP50Ms: p.warmupP50Ms,
      warmupP99Ms: p.warmupP99Ms,
      warmupMaxMs: p.warmupMaxMs,
      deliveryP50Ms: sink.latency.quantile(0.5),
      deliveryP99Ms: sink.latency.quantile(0.99),
      deliveryMaxMs: sink.latency.max,
      cpu,
      readersLoopDelayP99Ms: loop.count > 0 ? loop.percentile(99) / 1e6 : Number.NaN,
      publisherLoopDelayP99Ms: p.loopDelayP99Ms,
      scriptCallsPerRequest: (after.scripts - before.scripts) / (total - warm),
      redisCommandsPerRequest: (after.commands - before.commands) / (total - warm),
    };
    log(
      `server API: ${result.errors} errors, request p99 ${result.requestP99Ms.toFixed(1)} ms (warm-up ${result.warmupP99Ms.toFixed(1)} ms), delivery p99 ${result.deliveryP99Ms.toFixed(1)} ms, ` +
        `${result.deliveries}/${result.expectedDeliveries} deliveries; CPU cores: relays ${cpu.relays.toFixed(2)}, redis ${cpu.redis.toFixed(2)}, ` +
        `readers ${cpu.readers.toFixed(2)}, publisher ${cpu.publisher.toFixed(2)}; loop delay p99: readers ${result.readersLoopDelayP99Ms.toFixed(1)} ms, publisher ${result.publisherLoopDelayP99Ms.toFixed(1)} ms; ` +
        `per request: ${result.scriptCallsPerRequest.toFixed(2)} script calls, ${result.redisCommandsPerRequest.toFixed(2)} Redis commands`,
    );
    return result;
  } finally {
    if (publisher.exitCode === null && publisher.signalCode === null) publisher.kill();
    unpin();
    await Promise.all(members.map((m) => m.close()));
    await Promise.all(relays.map((r) => r.stop()));
    await redis.stop();
  }
}

/** The BENCHMARKS.md section. */
export function serverApiSection(r: ServerApiBenchResult): string[] {
  const ms = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(1)} ms` : '—');
  const pass = r.errors === 0 && r.requestP99Ms <= SERVER_API_P99_TARGET_MS && r.deliveries >= r.expectedDeliveries;
  const out = [
    '## Server API',
    '',
    `\`POST /api/publish\` at ${r.rate} requests/s for ${r.durationSec} s, alternating between two relays over one redis-server, ` +
      `to one room of ${r.members} members spread evenly over both relays (raw WebSocket subscribers; generator and servers pinned to separate CPUs as in the fan-out when taskset is there), after a ${r.warmupSec} s warm-up at the same rate; message recovery on (each publish runs the history script). ` +
      'Request latency: from sending the request to the end of its response (keep-alive connections), timed by a publisher process of its own ' +
      '(bench/api-publisher.ts) on the generator CPU, so that reading the deliveries does not delay it. Delivery latency: from sending ' +
      `the request to a member reading the message. Target: 0 errors and p99 request latency ≤ ${SERVER_API_P99_TARGET_MS} ms.`,
    '',
    '| requests measured | sent at | errors | request p50 / p99 / max | deliveries | delivery p50 / p99 / max | result |',
    '|---|---|---|---|---|---|---|',
    `| ${r.requests.toLocaleString('en-US')} | ${Math.round(r.achievedRate)}/s | ${r.errors} | ${ms(r.requestP50Ms)} / ${ms(r.requestP99Ms)} / ${ms(r.requestMaxMs)} | ` +
      `${r.deliveries.toLocaleString('en-US')} of ${r.expectedDeliveries.toLocaleString('en-US')} (warm-up included) | ${ms(r.deliveryP50Ms)} / ${ms(r.deliveryP99Ms)} / ${ms(r.deliveryMaxMs)} | ${pass ? 'pass' : '**fail**'} |`,
    '',
    `Warm-up, timed apart and not judged (the relays' first ${r.warmupSec} s of requests, from their start; bench/findings.md "Server API latency" says why it is apart): ` +
      `request p50 ${ms(r.warmupP50Ms)} / p99 ${ms(r.warmupP99Ms)} / max ${ms(r.warmupMaxMs)}. Errors are counted over the warm-up and the measured window.`,
    '',
  ];
  if (r.errorSamples.length > 0) out.push(`Errors seen: ${r.errorSamples.join('; ')}.`, '');
  const cores = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '—');
  out.push(
    `CPU over the measured window, in cores: relays ${cores(r.cpu.relays)} and redis-server ${cores(r.cpu.redis)} (servers' CPU), ` +
      `the members' reader ${cores(r.cpu.readers)} and the publisher ${cores(r.cpu.publisher)} (generator CPU). Event-loop delay p99: ` +
      `reader ${ms(r.readersLoopDelayP99Ms)}, publisher ${ms(r.publisherLoopDelayP99Ms)}. Per request: ${r.scriptCallsPerRequest.toFixed(2)} script calls ` +
      `(below 1 when requests of one event-loop turn share the append script), ${r.redisCommandsPerRequest.toFixed(2)} Redis commands (INFO; a script's commands included).`,
    '',
  );
  return out;
}
