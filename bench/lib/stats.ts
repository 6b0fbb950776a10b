/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Resolves after ms; only for pacing samples and load, never to wait for a condition. */
export function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `check` every `intervalMs` until it returns true; false once `timeoutMs` or `maxPolls` is reached.
 */
export async function pollUntil(check: () => boolean, timeoutMs: number, intervalMs = 20, maxPolls = 100_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < maxPolls; i++) {
    if (check()) return true;
    if (Date.now() >= deadline) return false;
    await pause(intervalMs);
  }
  return check();
}
