import { verifyToken, type TokenClaims, type TokenRules } from './auth';
import type { ServiceConfig } from './config';
import { refusal, type DefaultRoomAccess, type RoomAccess, type RoomAction } from './permissions';
import { encodeTokenExpiring } from './protocol';

/**
 * Token expiry on open connections (docs/protocol.md, "Token expiry"): a connection whose token has an `exp` gets a
 * `token_expiring` frame before it, may send `refresh` with a new token of the same `sub`, and is closed at `exp`
 * plus the grace period when no valid refresh came. One schedule serves every connection of the instance.
 */

/** What the relay keeps about a connection's token: its subject, expiry, permissions and place in the schedule. */
export class ConnectionAuth {
  /** Bucket of the schedule this connection waits in; NaN when it waits in none (no `exp`). */
  due = Number.NaN;
  /** Whether the next due time is the close (after `token_expiring` was sent) rather than the notice. */
  noticed = false;
  constructor(
    readonly sub: string | undefined,
    /** `exp` in milliseconds since the epoch; undefined when the token never expires. */
    readonly expMs: number | undefined,
    readonly access: RoomAccess,
  ) {}
}

/** A connection as the token lifetime sees it. */
export interface Authenticated {
  auth: ConnectionAuth | null;
}

export interface TokenLifetimeOptions<C extends Authenticated> {
  readonly rules: TokenRules;
  /** RELAY_TOKEN_EXPIRY_NOTICE_MS: how long before `exp` the notice goes out (at most half the token's remaining life). */
  readonly noticeMs: number;
  /** RELAY_TOKEN_EXPIRY_GRACE_MS: how long after `exp` a connection without a valid refresh is closed. */
  readonly graceMs: number;
  readonly defaultAccess: DefaultRoomAccess;
  /** Sends a frame to the connection. */
  readonly send: (conn: C, text: string) => void;
  /** Closes the connection: its token expired and was not refreshed. */
  readonly expire: (conn: C) => void;
  /** @default Date.now */
  readonly now?: () => number;
}

/** The outcome of a `refresh` frame. */
export type RefreshResult = { readonly ok: true; readonly exp: number | undefined } | { readonly ok: false; readonly reason: string };

/** The token rules a relay's config asks for; null when token auth is off. */
export function tokenRulesOf(config: ServiceConfig): TokenRules | null {
  return config.tokenSecret ? { secret: config.tokenSecret, audience: config.tokenAudience, issuer: config.tokenIssuer } : null;
}

/** The token lifetime a relay's config asks for; null when token auth is off (RELAY_TOKEN_SECRET unset). */
export function createTokenLifetime<C extends Authenticated>(
  config: ServiceConfig,
  io: Pick<TokenLifetimeOptions<C>, 'send' | 'expire'>,
): TokenLifetime<C> | null {
  const rules = tokenRulesOf(config);
  if (rules === null) return null;
  return new TokenLifetime({
    rules,
    noticeMs: config.tokenExpiryNoticeMs,
    graceMs: config.tokenExpiryGraceMs,
    defaultAccess: config.defaultRoomAccess,
    ...io,
  });
}

/** Connections' token state: attach at connect, refresh, permission checks, notice and close on time. */
export class TokenLifetime<C extends Authenticated> {
  private readonly schedule: Schedule<C>;
  private readonly now: () => number;

  constructor(private readonly opts: TokenLifetimeOptions<C>) {
    this.now = opts.now ?? Date.now;
    this.schedule = new Schedule<C>(SCHEDULE_RESOLUTION_MS, (conn) => this.due(conn), this.now);
  }

  /** Connections waiting for a notice or a close. */
  get scheduled(): number {
    return this.schedule.size;
  }

  /** Records a connection's verified token and schedules its notice. */
  attach(conn: C, claims: TokenClaims): void {
    this.detach(conn);
    const auth = new ConnectionAuth(claims.sub, claims.exp === undefined ? undefined : claims.exp * 1000, claims.access);
    conn.auth = auth;
    if (auth.expMs === undefined) return;
    const now = this.now();
    const lead = Math.min(this.opts.noticeMs, Math.max(0, (auth.expMs - now) / 2));
    auth.due = this.schedule.add(conn, auth.expMs - lead);
  }

  /** Forgets a connection that closed. */
  detach(conn: C): void {
    const auth = conn.auth;
    if (auth === null || Number.isNaN(auth.due)) return;
    this.schedule.remove(conn, auth.due);
    auth.due = Number.NaN;
  }

  /**
   * Verifies a new token with the connect rules; it must name the same `sub`. On success it replaces the
   * connection's token (expiry and permissions). The reason of a refusal never repeats the token.
   */
  async refresh(conn: C, token: string): Promise<RefreshResult> {
    const check = await verifyToken(token, this.opts.rules, this.now());
    if (!check.ok) return { ok: false, reason: check.reason };
    const current = conn.auth?.sub;
    if (check.claims.sub !== current) {
      return {
        ok: false,
        reason: `the new token is for ${describeSub(check.claims.sub)}, this connection for ${describeSub(current)}; a refresh must keep the sub (connect again to change user)`,
      };
    }
    this.attach(conn, check.claims);
    return { ok: true, exp: check.claims.exp };
  }

  /** Why the connection may not do `action` in `room` (null: a broadcast), or null when it may. */
  refusal(conn: C, action: RoomAction, room: string | null): string | null {
    return conn.auth === null ? null : refusal(conn.auth.access, this.opts.defaultAccess, action, room);
  }

  stop(): void {
    this.schedule.clear();
  }

  private due(conn: C): void {
    const auth = conn.auth;
    if (auth === null || auth.expMs === undefined) return;
    auth.due = Number.NaN;
    if (auth.noticed) {
      this.opts.expire(conn);
      return;
    }
    auth.noticed = true;
    const closeAt = auth.expMs + this.opts.graceMs;
    this.opts.send(conn, encodeTokenExpiring(auth.expMs / 1000, closeAt));
    auth.due = this.schedule.add(conn, closeAt);
  }
}

/** Due times are rounded up to this: one bucket (a Set) per 100 ms that has connections due in it. */
const SCHEDULE_RESOLUTION_MS = 100;

function describeSub(sub: string | undefined): string {
  return sub === undefined ? 'no sub' : `sub ${JSON.stringify(sub.length > 64 ? `${sub.slice(0, 64)}…` : sub)}`;
}

/**
 * Items due at given times, with one timer for all of them: items are kept in buckets of `resolutionMs`, the buckets'
 * keys in a min-heap, and the timer is set for the earliest bucket. Adding or removing an item costs a Set operation
 * (plus a heap push for a new bucket); 10,000 connections cost 10,000 Set entries and a few hundred keys, not 10,000
 * timers.
 */
export class Schedule<T> {
  private readonly buckets = new Map<number, Set<T>>();
  /** Bucket keys, a min-heap; keys of buckets emptied by remove() stay until they come up (or a compaction). */
  private heap: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerKey = Number.POSITIVE_INFINITY;
  private count = 0;

  constructor(
    private readonly resolutionMs: number,
    private readonly fire: (item: T) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.count;
  }

  /** Schedules `item` at `atMs` (or at the next tick when that has passed); returns the key remove() needs. */
  add(item: T, atMs: number): number {
    const key = Math.ceil(atMs / this.resolutionMs);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = new Set();
      this.buckets.set(key, bucket);
      heapPush(this.heap, key);
    }
    if (!bucket.has(item)) {
      bucket.add(item);
      this.count++;
    }
    if (key < this.timerKey) this.arm();
    return key;
  }

  remove(item: T, key: number): void {
    const bucket = this.buckets.get(key);
    if (!bucket?.delete(item)) return;
    this.count--;
    if (bucket.size > 0) return;
    this.buckets.delete(key);
    if (this.heap.length > 64 && this.heap.length > 2 * this.buckets.size) this.compact();
  }

  clear(): void {
    this.buckets.clear();
    this.heap = [];
    this.count = 0;
    this.disarm();
  }

  private compact(): void {
    this.heap = [...this.buckets.keys()].sort((a, b) => a - b);
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerKey = Number.POSITIVE_INFINITY;
  }

  /** Sets the one timer for the earliest bucket still holding items. */
  private arm(): void {
    this.disarm();
    while (this.heap.length > 0 && !this.buckets.has(this.heap[0])) heapPop(this.heap);
    if (this.heap.length === 0) return;
    const key = this.heap[0];
    this.timerKey = key;
    this.timer = setTimeout(this.tick, Math.max(0, key * this.resolutionMs - this.now()));
    this.timer.unref();
  }

  private readonly tick = (): void => {
    this.timer = null;
    this.timerKey = Number.POSITIVE_INFINITY;
    const nowKey = Math.floor(this.now() / this.resolutionMs);
    const due: T[] = [];
    while (this.heap.length > 0 && this.heap[0] <= nowKey) {
      const key = heapPop(this.heap);
      const bucket = this.buckets.get(key);
      if (!bucket) continue;
      this.buckets.delete(key);
      this.count -= bucket.size;
      for (const item of bucket) due.push(item);
    }
    // Fired after the buckets are settled, so a callback may schedule the item again.
    for (const item of due) this.fire(item);
    if (this.timer === null) this.arm();
  };
}

function heapPush(heap: number[], key: number): void {
  let i = heap.push(key) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent] <= key) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = key;
}

function heapPop(heap: number[]): number {
  const top = heap[0];
  const last = heap.pop() as number;
  if (heap.length === 0) return top;
  let i = 0;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= heap.length) break;
    const child = left + 1 < heap.length && heap[left + 1] < heap[left] ? left + 1 : left;
    if (heap[child] >= last) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = last;
  return top;
}
