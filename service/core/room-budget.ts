/**
 * The budget of rooms a connection may start using per interval (RELAY_ROOM_CREATE_BUDGET per
 * RELAY_ROOM_CREATE_INTERVAL_MS). A room counts once per interval the first time the connection joins or publishes to
 * it, whether or not the room already has history: telling a fresh room from an existing one would cost a Redis read
 * and an attacker could dodge it by reusing a few known rooms' names, so every room a connection touches is charged.
 * Rooms the connection is a member of are free (they were charged on join). So one connection stores history in at
 * most budget × ceil(TTL / interval + 1) rooms at once (see docs/redis-backplane.md "Sizing").
 */

export interface RoomBudgetLimits {
  /** Rooms per interval. */
  readonly roomCreateBudget: number;
  readonly roomCreateIntervalMs: number;
}

export class RoomBudget {
  /**
   * Rooms charged in the current interval (at most the budget): most connections touch one room, so the first is kept
   * as a string and a Set is made only for the second (a Set costs about 150 bytes per idle connection).
   */
  #charged: string | Set<string> | undefined = undefined;
  #windowStart: number;

  constructor(now = Date.now()) {
    this.#windowStart = now;
  }

  /** Rooms charged in the current interval. */
  get size(): number {
    const charged = this.#charged;
    return charged === undefined ? 0 : typeof charged === 'string' ? 1 : charged.size;
  }

  /**
   * Charges `room` to the connection unless it is already charged this interval or `member` (joined); false when the
   * budget is spent (the join or publish must be refused and nothing stored).
   */
  take(room: string, member: boolean, limits: RoomBudgetLimits, now = Date.now()): boolean {
    if (now - this.#windowStart >= limits.roomCreateIntervalMs) {
      this.#windowStart = now;
      this.#charged = undefined;
    }
    if (member || this.#has(room)) return true;
    if (this.size >= limits.roomCreateBudget) return false;
    const charged = this.#charged;
    if (charged === undefined) this.#charged = room;
    else if (typeof charged === 'string') this.#charged = new Set([charged, room]);
    else charged.add(room);
    return true;
  }

  /** Milliseconds until the budget is refilled. */
  retryAfterMs(limits: RoomBudgetLimits, now = Date.now()): number {
    return Math.max(0, this.#windowStart + limits.roomCreateIntervalMs - now);
  }

  #has(room: string): boolean {
    const charged = this.#charged;
    return charged === room || (typeof charged === 'object' && charged.has(room));
  }
}

/** The `room_budget` error's message: what was refused and when to retry. */
export function roomBudgetMessage(room: string, limits: RoomBudgetLimits, retryAfterMs: number): string {
  return (
    `this connection already used ${limits.roomCreateBudget} different rooms in the last ${limits.roomCreateIntervalMs} ms ` +
    `(RELAY_ROOM_CREATE_BUDGET per RELAY_ROOM_CREATE_INTERVAL_MS); ${JSON.stringify(room)} was refused and nothing was stored, ` +
    `retry in ${Math.ceil(retryAfterMs / 1000)} s or use rooms this connection already joined`
  );
}
