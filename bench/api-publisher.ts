/**
 * The server API benchmark's backend (bench/server-api.ts forks it): sends `POST /api/publish` at a fixed rate,
 * alternating between the relays over keep-alive connections, and times each request from sending it to the end of
 * its response. It runs as its own process so that the request latency is not the time a response waits in a loop
 * that is busy reading every member's deliveries, or paused by that loop's garbage collection: a backend that
 * publishes does not also read a room's deliveries. The parent sends one `PublisherPlan`; this process answers
 * `{type:'measuring'}` when the measured window starts and `{type:'done', result}` at the end, then exits.
 */
import { Agent, request } from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { LatencyHistogram } from './lib/histogram';
import { timestampPayload } from './lib/ws-load';

export interface PublisherPlan {
  readonly ports: readonly number[];
  /** The relays' names, for the error samples, in the order of `ports`. */
  readonly names: readonly string[];
  readonly apiKey: string;
  readonly room: string;
  /** Requests per second, over all ports. */
  readonly rate: number;
  /** Requests sent before the measured window (timed apart: they are the relays' first requests). */
  readonly warm: number;
  /** Requests in all, warm-up included. */
  readonly total: number;
  /** Requests in flight per relay at most; beyond it a request is counted as an error (the relay is not keeping up). */
  readonly maxInFlight: number;
  /** How long the last answers may take after the last request. */
  readonly drainTimeoutMs: number;
  /**
   * The parent's `process.hrtime.bigint() - performance.now()` in nanoseconds, as a decimal string: the payloads carry
   * the send time on the parent's performance clock, which reads the delivery latencies.
   */
  readonly parentClockBaseNs: string;
}

export interface PublisherResult {
  readonly answered: number;
  /** Requests answered with anything but 200, failed, or refused for too many in flight. */
  readonly errors: number;
  readonly errorSamples: readonly string[];
  /** Seconds from the first measured request to the last one sent. */
  readonly sendSec: number;
  readonly requestP50Ms: number;
  readonly requestP99Ms: number;
  readonly requestMaxMs: number;
  /** The warm-up's request latency, from the relays' first request on: not judged, reported so the start is seen. */
  readonly warmupP50Ms: number;
  readonly warmupP99Ms: number;
  readonly warmupMaxMs: number;
  /** This process's CPU use over the measured window, in cores. */
  readonly cpuCores: number;
  /** This process's event-loop delay p99 over the measured window. */
  readonly loopDelayP99Ms: number;
}

export type PublisherMessage = { readonly type: 'measuring' } | { readonly type: 'done'; readonly result: PublisherResult };

const TICK_MS = 2;
const MAX_ERROR_SAMPLES = 5;

function clockBaseNs(): bigint {
  return process.hrtime.bigint() - BigInt(Math.round(performance.now() * 1e6));
}

async function run(plan: PublisherPlan, report: (m: PublisherMessage) => void): Promise<PublisherResult> {
  // Both clocks count from their process's start on the same monotonic clock: the difference of their bases maps one to the other.
  const toParentMs = Number(clockBaseNs() - BigInt(plan.parentClockBaseNs)) / 1e6;
  const agents = plan.ports.map(() => new Agent({ keepAlive: true, maxSockets: plan.maxInFlight }));
  const latency = new LatencyHistogram();
  const warmLatency = new LatencyHistogram();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const inFlight = plan.ports.map(() => 0);
  let sent = 0;
  let answered = 0;
  let errors = 0;
  const errorSamples: string[] = [];
  const fail = (why: string): void => {
    errors++;
    if (errorSamples.length < MAX_ERROR_SAMPLES && !errorSamples.includes(why)) errorSamples.push(why);
  };
  const publish = (i: number): void => {
    const r = i % plan.ports.length;
    if ((inFlight[r] ?? 0) >= plan.maxInFlight) {
      answered++;
      fail(`over ${plan.maxInFlight} requests in flight on ${plan.names[r] ?? `relay ${r}`}`);
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
      else (i >= plan.warm ? latency : warmLatency).record(performance.now() - started);
    };
    const body = JSON.stringify({ room: plan.room, data: timestampPayload(started + toParentMs) });
    const req = request(
      {
        host: '127.0.0.1',
        port: plan.ports[r],
        path: '/api/publish',
        method: 'POST',
        agent: agents[r],
        headers: { Authorization: `Bearer ${plan.apiKey}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => settle(res.statusCode === 200 ? null : `HTTP ${res.statusCode ?? '?'}`));
      },
    );
    req.on('error', (err) => settle(err.message));
    req.end(body);
  };
  const t0 = performance.now();
  let tMeasured = t0;
  let cpuMeasured = process.cpuUsage();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(plan.total, Math.floor(((performance.now() - t0) * plan.rate) / 1000));
      while (sent < due) {
        if (sent === plan.warm) {
          report({ type: 'measuring' });
          tMeasured = performance.now();
          cpuMeasured = process.cpuUsage();
          loop.enable();
        }
        publish(sent++);
      }
      if (sent >= plan.total) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  const sendSec = (performance.now() - tMeasured) / 1000;
  const deadline = performance.now() + plan.drainTimeoutMs;
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (answered < plan.total && performance.now() < deadline) return;
      clearInterval(poll);
      resolve();
    }, 20);
  });
  loop.disable();
  const cpu = process.cpuUsage(cpuMeasured);
  for (const a of agents) a.destroy();
  return {
    answered,
    errors: errors + (plan.total - answered),
    errorSamples,
    sendSec,
    requestP50Ms: latency.quantile(0.5),
    requestP99Ms: latency.quantile(0.99),
    requestMaxMs: latency.max,
    warmupP50Ms: warmLatency.quantile(0.5),
    warmupP99Ms: warmLatency.quantile(0.99),
    warmupMaxMs: warmLatency.max,
    cpuCores: (cpu.user + cpu.system) / 1e6 / Math.max(sendSec, 1e-3),
    loopDelayP99Ms: loop.count > 0 ? loop.percentile(99) / 1e6 : Number.NaN,
  };
}

const send = (m: PublisherMessage): void => {
  if (process.connected) process.send?.(m);
};
if (process.send === undefined) {
  process.stderr.write('bench/api-publisher.ts is forked by bench/server-api.ts (it needs an IPC channel); run `npm run bench -- --only api`\n');
  process.exitCode = 2;
} else {
  // The parent gone (or done with this process): nothing is left to report to.
  process.once('disconnect', () => process.exit(0));
  process.once('message', (plan: PublisherPlan) => {
    run(plan, send).then(
      (result) => {
        const done: PublisherMessage = { type: 'done', result };
        // Disconnecting ends this process; only once the result has been handed over.
        process.send?.(done, () => {
          if (process.connected) process.disconnect();
        });
      },
      (err: unknown) => {
        process.stderr.write(`api publisher failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exit(1);
      },
    );
  });
}
