/**
 * Server API benchmark (issue 17): a backend publishes through `POST /api/publish` at a fixed rate, alternating between
 * two relays over one redis-server, to one room whose members are spread over both relays. Reports errors, the request
 * latency (send to response) and the end-to-end delivery latency (send to a member reading the frame), with message
 * recovery on, so every publish goes through the history script as a client publish does.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pinSelf, type CpuPinning } from './lib/cpu-pinning';
import { LatencyHistogram } from './lib/histogram';
import { connectRawMember } from './lib/raw-subscriber';
import { startBenchRedis, startBenchRelay, type BenchRelay, type BenchTarget } from './lib/servers';
import { pollUntil } from './lib/stats';
import { DeliverySink, timestampPayload, type LoadSocket } from './lib/ws-load';

const API_KEY = 'bench-server-api-key-0123456789abcdef';
const ROOM = 'bench-api';
/** Requests in flight per relay at most; beyond it the publisher counts the request as an error (the relay is not keeping up). */
const MAX_IN_FLIGHT = 256;
const TICK_MS = 2;
/** How long the last deliveries may take to arrive after the last response. */
const DRAIN_TIMEOUT_MS = 10_000;

export interface ServerApiBenchOptions {
  /** The bundled relay (its env: recovery on). */
  readonly target: BenchTarget;
  /** Members of the room, spread evenly over the two relays. @default 200 */
  readonly members: number;
  /** Requests per second, over both relays. @default 1000 */
  readonly rate: number;
  readonly durationMs: number;
  /** Published before the measured window at the same rate, not counted (connections, JIT, script cache). @default 2000 */
  readonly warmupMs?: number;
  /** The generator and the servers on separate CPUs, as in the fan-out (see lib/cpu-pinning.ts). @default none */
  readonly pinning?: CpuPinning | null;
  readonly log: (line: string) => void;
}

export interface ServerApiBenchResult {
  readonly members: number;
  readonly rate: number;
  readonly durationSec: number;
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
  readonly deliveryP50Ms: number;
  readonly deliveryP99Ms: number;
  readonly deliveryMaxMs: number;
}

/** The target of the issue: p99 request latency on loopback. */
export const SERVER_API_P99_TARGET_MS = 25;

export async function runServerApiBench(opts: ServerApiBenchOptions): Promise<ServerApiBenchResult> {
  const { log } = opts;
  const pinning = opts.pinning ?? null;
  const redis = await startBenchRedis(pinning?.servers);
  const unpin = pinning ? pinSelf(pinning.generator) : () => undefined;
  const relays: BenchRelay[] = [];
  const members: LoadSocket[] = [];
  try {
    for (const name of ['api-a', 'api-b']) {
      relays.push(await startBenchRelay(name, opts.target, { REDIS_URL: redis.url, RELAY_API_KEY: API_KEY, RELAY_CHANNEL_PREFIX: 'bench-api' }, pinning?.servers));
    }
    const sink = new DeliverySink();
    for (let i = 0; i < opts.members; i++) members.push(await connectRawMember(relays[i % relays.length].wsUrl, ROOM, sink.onFrame));
    log(`server API: ${opts.members} members over ${relays.length} relays, ${opts.rate} requests/s for ${opts.durationMs / 1000} s`);
    const agents = relays.map(() => new Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT }));
    const latency = new LatencyHistogram();
    const inFlight = relays.map(() => 0);
    let sent = 0;
    let answered = 0;
    let errors = 0;
    const errorSamples: string[] = [];
    const fail = (why: string): void => {
      errors++;
      if (errorSamples.length < 5 && !errorSamples.includes(why)) errorSamples.push(why);
    };
    const warm = Math.round((opts.rate * (opts.warmupMs ?? 2000)) / 1000);
    const publish = (i: number): void => {
      const r = i % relays.length;
      const relay = relays[r];
      if ((inFlight[r] ?? 0) >= MAX_IN_FLIGHT) {
        fail(`over ${MAX_IN_FLIGHT} requests in flight on ${relay.name}`);
        return;
      }
      inFlight[r] = (inFlight[r] ?? 0) + 1;
      const started = performance.now();
      let settled = false;
      const settle = (error: string | null): void => {
        if (settled) return;
        settled = true;
        inFlight[r] = (inFlight[r] ?? 1) - 1;
        answered++;
        if (error !== null) fail(error);
        else if (i >= warm) latency.record(performance.now() - started);
      };
      const body = JSON.stringify({ room: ROOM, data: timestampPayload() });
      const req = request(
        {
          host: '127.0.0.1',
          port: relay.port,
          path: '/api/publish',
          method: 'POST',
          agent: agents[r],
          headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => settle(res.statusCode === 200 ? null : `HTTP ${res.statusCode ?? '?'}`));
        },
      );
      req.on('error', (err) => settle(err.message));
      req.end(body);
    };
    const total = warm + Math.round((opts.rate * opts.durationMs) / 1000);
    const t0 = performance.now();
    let tMeasured = t0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) * opts.rate) / 1000));
        while (sent < due) {
          if (sent === warm) {
            sink.measuring = true;
            tMeasured = performance.now();
          }
          publish(sent++);
        }
        if (sent >= total) {
          clearInterval(timer);
          resolve();
        }
      }, TICK_MS);
    });
    const sendSec = (performance.now() - tMeasured) / 1000;
    // Every member gets every publish, warm-up included (the sink counts them all).
    const expected = (total - errors) * opts.members;
    await pollUntil(() => answered >= total && sink.delivered >= expected, DRAIN_TIMEOUT_MS);
    for (const a of agents) a.destroy();
    const result: ServerApiBenchResult = {
      members: opts.members,
      rate: opts.rate,
      durationSec: opts.durationMs / 1000,
      requests: total - warm,
      errors: errors + (total - answered),
      errorSamples,
      achievedRate: (total - warm) / sendSec,
      expectedDeliveries: expected,
      deliveries: sink.delivered,
      requestP50Ms: latency.quantile(0.5),
      requestP99Ms: latency.quantile(0.99),
      requestMaxMs: latency.max,
      deliveryP50Ms: sink.latency.quantile(0.5),
      deliveryP99Ms: sink.latency.quantile(0.99),
      deliveryMaxMs: sink.latency.max,
    };
    log(
      `server API: ${result.errors} errors, request p99 ${result.requestP99Ms.toFixed(1)} ms, delivery p99 ${result.deliveryP99Ms.toFixed(1)} ms, ` +
        `${result.deliveries}/${result.expectedDeliveries} deliveries`,
    );
    return result;
  } finally {
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
      `to one room of ${r.members} members spread evenly over both relays (raw WebSocket subscribers; generator and servers pinned to separate CPUs as in the fan-out when taskset is there), after a warm-up at the same rate; message recovery on (each publish runs the history script). ` +
      'Request latency: from sending the request to the end of its response (keep-alive connections). Delivery latency: from sending ' +
      `the request to a member reading the message. Target: 0 errors and p99 request latency ≤ ${SERVER_API_P99_TARGET_MS} ms.`,
    '',
    '| requests measured | sent at | errors | request p50 / p99 / max | deliveries | delivery p50 / p99 / max | result |',
    '|---|---|---|---|---|---|---|',
    `| ${r.requests.toLocaleString('en-US')} | ${Math.round(r.achievedRate)}/s | ${r.errors} | ${ms(r.requestP50Ms)} / ${ms(r.requestP99Ms)} / ${ms(r.requestMaxMs)} | ` +
      `${r.deliveries.toLocaleString('en-US')} of ${r.expectedDeliveries.toLocaleString('en-US')} (warm-up included) | ${ms(r.deliveryP50Ms)} / ${ms(r.deliveryP99Ms)} / ${ms(r.deliveryMaxMs)} | ${pass ? 'pass' : '**fail**'} |`,
    '',
  ];
  if (r.errorSamples.length > 0) out.push(`Errors seen: ${r.errorSamples.join('; ')}.`, '');
  return out;
}
