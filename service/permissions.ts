/**
 * Who may join and publish where, from a connection's token (docs/protocol.md, "Permissions").
 *
 * - `rooms`: an object from room pattern to actions. A pattern is a room name (exact match) or a prefix ending in
 *   `*` (`chat:*`; `*` alone matches every room); actions are `join` and `publish`. An action is allowed in a room
 *   when any pattern that matches the room lists it.
 * - `broadcast`: `true` allows publishing without a room.
 * - Without `rooms`, RELAY_DEFAULT_ROOM_ACCESS decides for rooms (`all` or `none`); without `broadcast` too, it
 *   decides for broadcasts (a token that lists its rooms broadcasts only with `broadcast: true`).
 * - `user:<sub>` is joinable by the connection whose token's `sub` is `<sub>`, and by nobody else, whatever the
 *   claims say.
 */

/** Actions a token can grant in a room. */
export type RoomAction = 'join' | 'publish';
export const ROOM_ACTIONS: readonly RoomAction[] = ['join', 'publish'];

/** RELAY_DEFAULT_ROOM_ACCESS: what a token without a `rooms` claim may do. */
export type DefaultRoomAccess = 'all' | 'none';

/** Most patterns one token may carry: the claim is matched on every join and publish. */
export const MAX_ROOM_PATTERNS = 64;
/** Rooms whose name is `user:` followed by a `sub` belong to that user. */
export const USER_ROOM_PREFIX = 'user:';

const JOIN = 1;
const PUBLISH = 2;
const ACTION_BITS: Record<RoomAction, number> = { join: JOIN, publish: PUBLISH };
const EXACT_RE = /^[A-Za-z0-9:_.-]{1,128}$/;
const PREFIX_RE = /^[A-Za-z0-9:_.-]{0,127}\*$/;

/** A token's permissions, checked and compiled once per token. */
export interface RoomAccess {
  /** The token's `sub`, owner of the room `user:<sub>`. */
  readonly sub: string | undefined;
  /** Exact room → action bits; null when the token has no `rooms` claim (the default applies). */
  readonly exact: ReadonlyMap<string, number> | null;
  /** Prefix patterns (without their `*`) and their action bits. */
  readonly prefixes: ReadonlyArray<readonly [string, number]>;
  /** The `broadcast` claim, when present. */
  readonly broadcast: boolean | undefined;
}

export type RoomAccessResult = { readonly ok: true; readonly access: RoomAccess } | { readonly ok: false; readonly reason: string };

/** Checks the `rooms` and `broadcast` claims strictly; a malformed claim refuses the whole token. */
export function parseRoomAccess(payload: Readonly<Record<string, unknown>>): RoomAccessResult {
  const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
  const broadcast = payload.broadcast;
  if (broadcast !== undefined && typeof broadcast !== 'boolean') {
    return { ok: false, reason: `token claim broadcast must be true or false; received ${kindOf(broadcast)}` };
  }
  const rooms = payload.rooms;
  if (rooms === undefined) return { ok: true, access: { sub, exact: null, prefixes: [], broadcast } };
  if (rooms === null || typeof rooms !== 'object' || Array.isArray(rooms)) {
    return {
      ok: false,
      reason: `token claim rooms must be an object mapping room patterns to lists of actions, e.g. {"chat:*":["join","publish"]}; received ${kindOf(rooms)}`,
    };
  }
  const entries = Object.entries(rooms as Record<string, unknown>);
  if (entries.length > MAX_ROOM_PATTERNS) {
    return { ok: false, reason: `token claim rooms has ${entries.length} patterns; at most ${MAX_ROOM_PATTERNS} are allowed` };
  }
  const exact = new Map<string, number>();
  const prefixes: Array<[string, number]> = [];
  for (const [pattern, actions] of entries) {
    const shown = JSON.stringify(pattern.length > 140 ? `${pattern.slice(0, 140)}…` : pattern);
    const isPrefix = PREFIX_RE.test(pattern);
    if (!isPrefix && !EXACT_RE.test(pattern)) {
      return {
        ok: false,
        reason: `token claim rooms has an invalid pattern ${shown}: use a room name (1-128 characters of A-Z a-z 0-9 : _ . -) or such a prefix followed by one trailing *`,
      };
    }
    const bits = actionBits(actions);
    if (typeof bits === 'string') return { ok: false, reason: `token claim rooms[${shown}] ${bits}` };
    if (isPrefix) prefixes.push([pattern.slice(0, -1), bits]);
    else exact.set(pattern, bits);
  }
  return { ok: true, access: { sub, exact, prefixes, broadcast } };
}

/** The action bits of one pattern's list, or what is wrong with it. */
function actionBits(actions: unknown): number | string {
  const expected = `must be a non-empty list of distinct actions among ${ROOM_ACTIONS.join(', ')}`;
  if (!Array.isArray(actions) || actions.length === 0) return `${expected}; received ${kindOf(actions)}`;
  let bits = 0;
  for (const action of actions) {
    const bit = typeof action === 'string' && Object.hasOwn(ACTION_BITS, action) ? ACTION_BITS[action as RoomAction] : 0;
    if (bit === 0) return `${expected}; received ${kindOf(action)} in the list`;
    if ((bits & bit) !== 0) return `${expected}; ${JSON.stringify(action)} is listed twice`;
    bits |= bit;
  }
  return bits;
}

/**
 * Whether `access` allows `action` in `room` (null: a broadcast, publish only). Returns null when allowed, else the
 * reason, worded for the client.
 */
export function refusal(access: RoomAccess, defaultAccess: DefaultRoomAccess, action: RoomAction, room: string | null): string | null {
  if (room === null) {
    const allowed = access.broadcast ?? (access.exact === null && defaultAccess === 'all');
    return allowed ? null : 'your token does not allow publishing without a room (it needs the claim "broadcast": true)';
  }
  if (action === 'join' && room.startsWith(USER_ROOM_PREFIX)) {
    return access.sub === room.slice(USER_ROOM_PREFIX.length)
      ? null
      : `room ${JSON.stringify(room)} belongs to another user: only the token whose sub is ${JSON.stringify(room.slice(USER_ROOM_PREFIX.length))} may join it`;
  }
  if (access.exact === null) {
    return defaultAccess === 'all' ? null : `your token has no "rooms" claim and RELAY_DEFAULT_ROOM_ACCESS is none: it may not ${action} in any room`;
  }
  let bits = access.exact.get(room) ?? 0;
  for (const [prefix, b] of access.prefixes) if (room.startsWith(prefix)) bits |= b;
  return (bits & ACTION_BITS[action]) !== 0 ? null : `your token does not allow ${action} in room ${JSON.stringify(room)} (see its "rooms" claim)`;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
