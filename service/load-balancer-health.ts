/**
 * What the load balancer's health check sees, and what the relay learns from those checks.
 *
 * - BackplaneOutage: how long the backplane has been unreachable. An ElastiCache failover or maintenance reaches every
 *   instance at once; taking them all out of the load balancer on the first failed ping would turn a 30 s blip into an
 *   outage, so the check turns 503 only once the outage outlasts a grace period (RELAY_BACKPLANE_GRACE_MS).
 * - DeregistrationWatch: a target the load balancer deregisters stops receiving health checks at once, while the
 *   connections it carries stay open until the deregistration delay ends and are then cut (1006 at the client). The
 *   watch notices the silence and starts the relay's drain while the connections still flow, so every client gets
 *   1001 and reconnects to an instance that stays (docs/infrastructure.md, "Deploys and scale-in").
 */
import type { BackplaneState } from './backplane/types';

/** Path of the load balancer's health check on the public port; /healthz stays the strict view for people and monitors. */
export const LB_HEALTH_PATH = '/healthz/lb';

export type Clock = () => number;

/** Since when the backplane has not been ready, judged against a grace period. */
export class BackplaneOutage {
  private downSince: number | null;
  private everReady = false;

  constructor(
    private readonly graceMs: number,
    private readonly now: Clock = Date.now,
  ) {
    this.downSince = now();
  }

  /** Feeds every backplane state change. */
  observe(state: BackplaneState): void {
    if (state === 'ready') {
      this.downSince = null;
      this.everReady = true;
    } else if (this.downSince === null) {
      this.downSince = this.now();
    }
  }

  /** Milliseconds since the backplane was last ready (0 while it is). */
  downForMs(): number {
    return this.downSince === null ? 0 : Math.max(0, this.now() - this.downSince);
  }

  /**
   * Whether the outage should take this instance out of the load balancer: once it lasts `graceMs`, or at once for
   * an instance whose backplane never came up (a new instance must prove it can reach the backplane before it
   * takes clients).
   */
  exceedsGrace(): boolean {
    if (this.downSince === null) return false;
    return !this.everReady || this.downForMs() >= this.graceMs;
  }
}

export interface DeregistrationWatchOptions {
  /** Silence after which the target counts as deregistered; 0 turns the watch off. */
  readonly silenceMs: number;
  /** The checks stopped: start draining. */
  readonly onSilence: () => void;
  /** Checks came back after a silence (the target was registered again): accept clients again. */
  readonly onResume: () => void;
}

/**
 * Arms on the first health check (a relay nobody checks, such as `npm run dev`, never drains on its own), then
 * calls onSilence once no check has arrived for `silenceMs`, and onResume when checks return.
 */
export class DeregistrationWatch {
  private timer: NodeJS.Timeout | undefined;
  private silent = false;
  private stopped = false;

  constructor(private readonly opts: DeregistrationWatchOptions) {}

  /** Whether checks stopped and have not come back. */
  get silenced(): boolean {
    return this.silent;
  }

  /** Call on every load balancer health check. */
  seen(): void {
    if (this.stopped || this.opts.silenceMs <= 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), this.opts.silenceMs);
    this.timer.unref();
    if (this.silent) {
      this.silent = false;
      this.opts.onResume();
    }
  }

  /** Stops watching for good (shutdown). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.silent = true;
    this.opts.onSilence();
  }
}
