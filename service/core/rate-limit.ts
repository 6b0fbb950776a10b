/** The per-connection token bucket: every inbound frame costs one token. */

/** Rejected frames are counted over this window to tell a burst from sustained abuse. */
export const REJECT_WINDOW_MS = 10_000;

export interface TokenBucket {
  tokens: number;
  lastRefill: number;
  rejects: number;
  rejectWindowStart: number;
}

export interface RateLimits {
  /** Frames per second refilled. */
  readonly rateLimit: number;
  /** Bucket size. */
  readonly rateBurst: number;
  /** Rejected frames within REJECT_WINDOW_MS before the connection counts as abusive. */
  readonly rateLimitMaxRejects: number;
}

/** 'ok' takes a token; 'limited' drops the frame; 'abuse' means the connection should be closed (1008). */
export function takeToken(bucket: TokenBucket, limits: RateLimits, now = Date.now()): 'ok' | 'limited' | 'abuse' {
  const { rateLimit, rateBurst, rateLimitMaxRejects } = limits;
  bucket.tokens = Math.min(rateBurst, bucket.tokens + ((now - bucket.lastRefill) / 1000) * rateLimit);
  bucket.lastRefill = now;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return 'ok';
  }
  if (now - bucket.rejectWindowStart > REJECT_WINDOW_MS) {
    bucket.rejectWindowStart = now;
    bucket.rejects = 0;
  }
  bucket.rejects++;
  return bucket.rejects > rateLimitMaxRejects ? 'abuse' : 'limited';
}
