/**
 * CloudWatch embedded metric format (EMF): one JSON document per interval, appended to a file the environment's log
 * streaming sends to CloudWatch Logs, where CloudWatch extracts the metrics. No agent API, no SDK, no credentials.
 *
 * The only dimension is the environment (RELAY_CHANNEL_PREFIX, `<app>-<env>` on Beanstalk), so the Average of
 * `Connections` over a period is the average per instance: the target-tracking policy scales on exactly that.
 */
import { appendFile } from 'node:fs/promises';
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
}

export interface EmfReporterOptions {
  /** File the documents are appended to. */
  readonly file: string;
  /** Period between documents. */
  readonly intervalMs: number;
  /** Dimension value: the environment. */
  readonly environment: string;
  readonly sample: () => Promise<EmfSample>;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
}

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
  };
}

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
      await appendFile(this.opts.file, `${JSON.stringify(doc)}\n`, { mode: 0o644 });
    } catch (err) {
      this.opts.logger.warn({ err, file: this.opts.file }, 'could not write the CloudWatch metrics line');
    }
  }
}
