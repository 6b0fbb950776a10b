// Log-scaled buckets, 1 % wide, from 1 µs to ~10^6 ms: percentiles within 1 % at a fixed cost per sample.
const GROWTH = 1.01;
const MIN_MS = 0.001;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e6 / MIN_MS) / LOG_GROWTH) + 1;

/** Latency histogram in milliseconds: O(1) record, no allocation per sample. */
export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private n = 0;
  private maxMs = 0;

  record(ms: number): void {
    const v = ms < MIN_MS ? MIN_MS : ms;
    let i = Math.floor(Math.log(v / MIN_MS) / LOG_GROWTH);
    if (i >= BUCKETS) i = BUCKETS - 1;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.n++;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  get count(): number {
    return this.n;
  }

  get max(): number {
    return this.n === 0 ? Number.NaN : this.maxMs;
  }

  /** Upper edge of the bucket holding the q-quantile (0 < q ≤ 1); NaN when empty. */
  quantile(q: number): number {
    if (this.n === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(MIN_MS * Math.pow(GROWTH, i + 1), this.maxMs);
    }
    return this.maxMs;
  }

  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.maxMs = 0;
  }
}
