/**
 * CloudWatch embedded metric format (EMF): one JSON document per interval, appended to a file the environment's log
 * streaming sends to CloudWatch Logs, where CloudWatch extracts the metrics. No agent API, no SDK, no credentials.
 *
 * The only dimension is the environment (RELAY_CHANNEL_PREFIX, `<app>-<env>` on Beanstalk), so the Average of
 * `Connections` over a period is the average per instance: the target-tracking policy scales on exactly that.
 */
import { appendFile, rename, stat } from 'node:fs/promises';
import type { Logger } from 'pino';

/** Namespace of the relay's metrics in CloudWatch; the stacks' alarms, dashboard and scaling policy read it. */
export const EMF_NAMESPACE = 'Relay';
/** Name of the dimension holding the environment. */
export const EMF_DIMENSION = 'Environment';

/** One sample of the relay's state. */
export interface EmfSample {
  /** Open WebSocket connections. */
  readonly connections: number;
  /** Deliveries to local sockets since the process started (a counter; the reporter turns it into a rate). */
  readonly deliveriesTotal: number;
  /** Whether the backplane is ready. */
  readonly backplaneReady: boolean;
  /** Milliseconds the backplane has been unreachable (0 while ready). */
  readonly backplaneDownMs: number;
  /** Sockets closed as slow consumers since the process started (a counter). */
  readonly slowConsumersTotal: number;
  /** Publish latency over the interval (see LatencyWindow.take); absent or count 0 when nothing was published. */
  readonly publishLatency?: LatencySummary;
}

/** Publish latencies of one interval, in milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Upper bounds (ms) of the interval histogram: 0.05 ms growing by 1.25x up to about 40 s. */
const LATENCY_BOUNDS_MS: readonly number[] = Array.from({ length: 62 }, (_, i) => Math.round(0.05 * 1.25 ** i * 1000) / 1000);

/**
 * Publish latencies of the current interval in fixed buckets: recording is an index search and an increment, no
 * allocation. A percentile is the upper bound of the bucket holding it (at most 25% above the true value, or 0.05 ms
 * for anything faster), capped at the exact maximum.
 */
export class LatencyWindow {
  private readonly counts = new Float64Array(LATENCY_BOUNDS_MS.length + 1);
  private count = 0;
  private max = 0;

  record(ms: number): void {
    let lo = 0;
    let hi = LATENCY_BOUNDS_MS.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ms <= LATENCY_BOUNDS_MS[mid]) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo] += 1;
    this.count += 1;
    if (ms > this.max) this.max = ms;
  }

  /** The interval's summary; starts the next interval. */
  take(): LatencySummary {
    const summary = { count: this.count, p50: this.percentile(0.5), p99: this.percentile(0.99), max: round(this.max) };
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
    return summary;
  }

  private percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= rank) return round(Math.min(LATENCY_BOUNDS_MS[i] ?? this.max, this.max));
    }
    return round(this.max);
  }
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

export interface EmfReporterOptions {
  /** File the documents are appended to. */
  readonly file: string;
  /** Period between documents. */
  readonly intervalMs: number;
  /** Dimension value: the environment. */
  readonly environment: string;
  readonly sample: () => Promise<EmfSample>;
  readonly logger: Logger;
  /**
   * Size past which the file is renamed to `<file>.1` (replacing the previous one) before the next line: the file
   * and its one predecessor stay under about twice this. @default 1 MiB
   */
  readonly maxBytes?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

/** Publish latency per interval, milliseconds: from a client's publish frame to the backplane accepting it. */
const LATENCY_METRICS = [
  { Name: 'PublishLatencyP50', Unit: 'Milliseconds' },
  { Name: 'PublishLatencyP99', Unit: 'Milliseconds' },
  { Name: 'PublishLatencyMax', Unit: 'Milliseconds' },
  { Name: 'Publishes', Unit: 'Count' },
];

/** The EMF document of one interval; counters are turned into per-second rates and per-interval counts. */
export function emfDocument(
  environment: string,
  at: number,
  sample: EmfSample,
  previous: { readonly at: number; readonly sample: EmfSample } | undefined,
): Record<string, unknown> {
  const seconds = previous ? Math.max(0.001, (at - previous.at) / 1000) : 0;
  const deliveries = previous ? Math.max(0, sample.deliveriesTotal - previous.sample.deliveriesTotal) : 0;
  const slow = previous ? Math.max(0, sample.slowConsumersTotal - previous.sample.slowConsumersTotal) : 0;
  // A metric without values in an interval is left out rather than reported as 0 ms, which would drag averages down.
  const latency = sample.publishLatency && sample.publishLatency.count > 0 ? sample.publishLatency : undefined;
  return {
    _aws: {
      Timestamp: at,
      CloudWatchMetrics: [
        {
          Namespace: EMF_NAMESPACE,
          Dimensions: [[EMF_DIMENSION]],
          Metrics: [
            { Name: 'Connections', Unit: 'Count' },
            { Name: 'DeliveriesPerSecond', Unit: 'Count/Second' },
            { Name: 'BackplaneUp', Unit: 'Count' },
            { Name: 'BackplaneDownSeconds', Unit: 'Seconds' },
            { Name: 'SlowConsumerCutoffs', Unit: 'Count' },
            ...(latency ? LATENCY_METRICS : []),
          ],
        },
      ],
    },
    [EMF_DIMENSION]: environment,
    Connections: sample.connections,
    DeliveriesPerSecond: seconds > 0 ? Math.round((deliveries / seconds) * 100) / 100 : 0,
    BackplaneUp: sample.backplaneReady ? 1 : 0,
    BackplaneDownSeconds: Math.round(sample.backplaneDownMs / 1000),
    SlowConsumerCutoffs: slow,
    ...(latency ? { PublishLatencyP50: latency.p50, PublishLatencyP99: latency.p99, PublishLatencyMax: latency.max, Publishes: latency.count } : {}),
  };
}

/** Default size cap of the EMF file before it is rotated. */
export const EMF_MAX_BYTES = 1024 * 1024;

/** Appends one document every interval; a write that fails is logged and the next interval tries again. */
export class EmfReporter {
  private timer: NodeJS.Timeout | undefined;
  private previous: { at: number; sample: EmfSample } | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(private readonly opts: EmfReporterOptions) {
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.writing = this.writing.then(() => this.report());
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a write in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.writing;
  }

  /** Samples and appends one document now. */
  async report(): Promise<void> {
    try {
      const sample = await this.opts.sample();
      const at = this.now();
      const doc = emfDocument(this.opts.environment, at, sample, this.previous);
      this.previous = { at, sample };
      await this.rotateIfFull();
      await appendFile(this.opts.file, `${JSON.stringify(doc)}\n`, { mode: 0o644 });
    } catch (err) {
      this.opts.logger.warn({ err, file: this.opts.file }, 'could not write the CloudWatch metrics line');
    }
  }

  /** Renames a file past maxBytes to `<file>.1`; the next append creates a fresh file under the watched name. */
  private async rotateIfFull(): Promise<void> {
    const size = await stat(this.opts.file).then(
      (s) => s.size,
      () => 0,
    );
    if (size < (this.opts.maxBytes ?? EMF_MAX_BYTES)) return;
    await rename(this.opts.file, `${this.opts.file}.1`).catch((err: unknown) => {
      // The line is still appended: a metric is worth more than the cap, and the next interval tries again.
      this.opts.logger.warn({ err, file: this.opts.file }, `could not rotate the CloudWatch metrics file to ${this.opts.file}.1; check that the folder is writable by the relay`);
    });
  }
}
