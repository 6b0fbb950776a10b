/** The limits on who may open a WebSocket, per instance and per client address. */
export interface AdmissionLimits {
  /** Connections (including upgrades in progress) this instance accepts. */
  readonly maxConnections: number;
  /** Connections one address may hold on this instance; 0 = no limit. */
  readonly maxPerAddress: number;
  /** New connections per second one address earns; 0 = no limit. */
  readonly connectRatePerAddress: number;
  /** New connections one address may open at once before the rate applies. */
  readonly connectBurstPerAddress: number;
}

/** A refused admission, with the HTTP answer for it. */
export interface Refusal {
  readonly status: 429 | 503;
  readonly error: 'full' | 'too_many_connections' | 'connect_rate_limited';
  readonly message: string;
  /** Seconds after which the same address may try again (Retry-After), when that is known. */
  readonly retryAfterSeconds?: number;
}

/** Below this share of maxConnections a full instance reports itself healthy again, so health does not flap per connection. */
const HEALTHY_AGAIN_RATIO = 0.9;
/** How often idle per-address entries are swept. */
const SWEEP_INTERVAL_MS = 10_000;

interface AddressState {
  connections: number;
  tokens: number;
  refilledAt: number;
}

/**
 * Counts connections per instance and per address and meters new connections per address with a token bucket.
 * A connection is counted from its admission until its release (the socket's close), so upgrades still being
 * checked count too. Nothing is allocated per connection: the caller keeps the key and releases by it. The per-address rate is what keeps reconnecting from being a way around per-connection limits:
 * a fresh connection gets a fresh frame budget, so how often an address may get one is bounded here.
 */
export class AdmissionControl {
  private readonly addresses = new Map<string, AddressState>();
  private admitted = 0;
  private full = false;
  private sweptAt: number;

  constructor(
    readonly limits: AdmissionLimits,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.sweptAt = now();
  }

  /** Connections admitted and not yet released. */
  get count(): number {
    return this.admitted;
  }

  /** Addresses with state (open connections or a bucket still refilling). */
  get trackedAddresses(): number {
    return this.addresses.size;
  }

  /** True from the moment the instance is full until it is back at 90 % of maxConnections or below. */
  get atCapacity(): boolean {
    return this.full;
  }

  /**
   * Admits one connection from `key` (null) or says why not. Every attempt that reaches the rate check costs a
   * token. Each admission must be released exactly once.
   */
  admit(key: string): Refusal | null {
    const now = this.now();
    if (now - this.sweptAt >= SWEEP_INTERVAL_MS) this.sweep(now);
    const { maxConnections, maxPerAddress, connectRatePerAddress, connectBurstPerAddress } = this.limits;
    if (this.admitted >= maxConnections) {
      this.full = true;
      return {
        status: 503,
        error: 'full',
        message: `this instance holds its maximum of ${maxConnections} connections (RELAY_MAX_CONNECTIONS); reconnect to another instance`,
      };
    }
    const state = this.addresses.get(key) ?? { connections: 0, tokens: connectBurstPerAddress, refilledAt: now };
    if (connectRatePerAddress > 0) {
      state.tokens = Math.min(connectBurstPerAddress, state.tokens + ((now - state.refilledAt) / 1000) * connectRatePerAddress);
      state.refilledAt = now;
      if (state.tokens < 1) {
        this.keep(key, state);
        return {
          status: 429,
          error: 'connect_rate_limited',
          message: `too many new connections from your address (RELAY_CONNECT_RATE_PER_ADDRESS is ${connectRatePerAddress}/s); retry later`,
          retryAfterSeconds: Math.max(1, Math.ceil((1 - state.tokens) / connectRatePerAddress)),
        };
      }
      state.tokens -= 1;
    }
    if (maxPerAddress > 0 && state.connections >= maxPerAddress) {
      this.keep(key, state);
      return {
        status: 429,
        error: 'too_many_connections',
        message: `your address holds ${maxPerAddress} connections to this instance (RELAY_MAX_CONNECTIONS_PER_ADDRESS); close one first`,
      };
    }
    state.connections++;
    this.keep(key, state);
    this.admitted++;
    if (this.admitted >= maxConnections) this.full = true;
    return null;
  }

  /** Ends one admission of `key`. */
  release(key: string): void {
    this.admitted--;
    const state = this.addresses.get(key);
    if (state) state.connections--;
    if (this.full && this.admitted <= Math.floor(this.limits.maxConnections * HEALTHY_AGAIN_RATIO)) this.full = false;
  }

  private keep(key: string, state: AddressState): void {
    if (this.limits.connectRatePerAddress > 0 || this.limits.maxPerAddress > 0) this.addresses.set(key, state);
  }

  /** Forgets addresses with no connection whose bucket has refilled: they are indistinguishable from new ones. */
  private sweep(now: number): void {
    this.sweptAt = now;
    const { connectRatePerAddress: rate, connectBurstPerAddress: burst } = this.limits;
    for (const [key, s] of this.addresses) {
      if (s.connections === 0 && (rate === 0 || s.tokens + ((now - s.refilledAt) / 1000) * rate >= burst)) this.addresses.delete(key);
    }
  }
}
