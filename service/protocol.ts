/**
 * The relay's wire protocol: client frame parsing and validation, and the server frames.
 * Every frame is JSON text; docs/protocol.md describes the exchange.
 */

/** The newest protocol; a client opts in with `?protocol=2` on the /ws URL, otherwise it speaks protocol 1. */
export const PROTOCOL_VERSION = 2;
/**
 * Protocol 1: every publish is answered with an ack. Protocol 2: a publish without an `id` gets no ack (a publish with
 * an `id` is still acked, and errors are always sent).
 */
export type ProtocolVersion = 1 | 2;

/** Reads the `protocol` query parameter of the upgrade; absent means 1. */
export function parseProtocolParam(value: string | null): { ok: true; version: ProtocolVersion } | { ok: false; message: string } {
  if (value === null) return { ok: true, version: 1 };
  if (value === '1' || value === '2') return { ok: true, version: Number(value) as ProtocolVersion };
  return {
    ok: false,
    message: `protocol ${JSON.stringify(value.slice(0, 20))} is not supported; connect to /ws?protocol=2 (publishes without an id are not acked) or leave protocol out for protocol 1`,
  };
}

/** Stable error codes carried by `error` frames. */
export type ErrorCode =
  | 'bad_json'
  | 'bad_frame'
  | 'unknown_type'
  | 'invalid_room'
  | 'too_large'
  | 'rate_limited'
  | 'too_many_rooms'
  | 'room_budget'
  | 'unauthorized'
  | 'forbidden'
  | 'presence_disabled'
  | 'backplane_unavailable';

/**
 * Close code for a connection whose token expired (`exp` plus RELAY_TOKEN_EXPIRY_GRACE_MS) without a valid `refresh`.
 * Reconnecting with a new token is the cure, so clients should fetch one before they reconnect.
 */
export const CLOSE_TOKEN_EXPIRED = 4001;
/**
 * Close code for a connection the application's backend closed through the server API (`POST /api/disconnect`).
 * Clients must not reconnect on their own: the backend decided this connection ends.
 */
export const CLOSE_DISCONNECTED = 4003;
/** Tokens in `refresh` frames are bounded like tokens in the upgrade URL (see MAX_TOKEN_CHARS in auth.ts). */
const MAX_REFRESH_TOKEN_CHARS = 4096;

export const ROOM_RE = /^[A-Za-z0-9:_.-]{1,128}$/;
const MAX_ID_LENGTH = 64;
/** Seqs stay within the integers a JavaScript number holds exactly. */
const SEQ_RE = /^(0|[1-9][0-9]{0,14})$/;
const MAX_EPOCH_LENGTH = 64;
const CLIENT_TYPES = ['join', 'leave', 'publish', 'ping', 'refresh', 'presence'] as const;
/**
 * Deepest nesting of arrays and objects accepted in `data`. The relay re-serialises `data` into the message frame,
 * and JSON.stringify recurses: a few thousand levels (a 10 KB frame) overflow the stack and the frame got no answer.
 */
export const MAX_DATA_DEPTH = 100;

/** Position in a room's history a client wants to resume from: the seq and epoch of the last message it has. */
export interface Since {
  readonly seq: string;
  readonly epoch: string;
}

export type ClientFrame =
  | { readonly type: 'join'; readonly room: string; readonly id?: string; readonly since?: Since; readonly presence?: boolean }
  | { readonly type: 'leave'; readonly room: string; readonly id?: string }
  | { readonly type: 'publish'; readonly room?: string; readonly data: unknown; readonly id?: string }
  | { readonly type: 'ping'; readonly id?: string }
  | { readonly type: 'refresh'; readonly token: string; readonly id?: string }
  | { readonly type: 'presence'; readonly room: string; readonly id?: string };

/** A refusal to send back to the client. */
export interface ProtocolError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly id?: string;
}

export type ParseResult = { readonly ok: true; readonly frame: ClientFrame } | ({ readonly ok: false } & ProtocolError);

/** Parses and validates one text frame from a client. */
export function parseClientFrame(text: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail('bad_json', `frame is not valid JSON; send one JSON object per text frame, e.g. {"type":"ping"}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail('bad_frame', `frame must be a JSON object with a "type" field; received ${describe(value)}`);
  }
  const obj = value as Record<string, unknown>;
  const rawId = obj.id;
  if (rawId !== undefined && (typeof rawId !== 'string' || rawId.length > MAX_ID_LENGTH)) {
    return fail('bad_frame', `"id" must be a string of at most ${MAX_ID_LENGTH} characters; received ${describe(rawId)}`);
  }
  const id = rawId;
  if (typeof obj.type !== 'string') {
    return fail('bad_frame', `"type" must be a string (one of ${CLIENT_TYPES.join(', ')}); received ${describe(obj.type)}`, id);
  }
  switch (obj.type) {
    case 'ping':
      return ok({ type: 'ping', id });
    case 'refresh':
      if (typeof obj.token !== 'string' || obj.token.length === 0 || obj.token.length > MAX_REFRESH_TOKEN_CHARS) {
        return fail('bad_frame', `refresh needs a "token" string (an HS256 JWT of at most ${MAX_REFRESH_TOKEN_CHARS} characters); received ${describeToken(obj.token)}`, id);
      }
      return ok({ type: 'refresh', token: obj.token, id });
    case 'join':
    case 'leave':
    case 'presence': {
      const room = checkRoom(obj.room, obj.type, id);
      if (typeof room !== 'string') return room;
      if (obj.type === 'leave' || obj.type === 'presence') return ok({ type: obj.type, room, id });
      if (obj.presence !== undefined && typeof obj.presence !== 'boolean') {
        return fail('bad_frame', `"presence" must be true (send joined/left events of the room) or false; received ${describe(obj.presence)}`, id);
      }
      const presence = obj.presence === undefined ? {} : { presence: obj.presence };
      if (obj.since === undefined) return ok({ type: 'join', room, id, ...presence });
      const since = obj.since as Record<string, unknown> | null;
      if (
        since === null ||
        typeof since !== 'object' ||
        Array.isArray(since) ||
        typeof since.seq !== 'string' ||
        typeof since.epoch !== 'string'
      ) {
        return fail('bad_frame', `"since" must be an object {"seq": string, "epoch": string}; received ${describe(obj.since)}`, id);
      }
      if (!SEQ_RE.test(since.seq)) {
        return fail('bad_frame', `"since.seq" must be a decimal string such as "42" (at most 15 digits); received ${describe(since.seq)}`, id);
      }
      if (since.epoch.length > MAX_EPOCH_LENGTH) {
        return fail('bad_frame', `"since.epoch" must be at most ${MAX_EPOCH_LENGTH} characters; received ${describe(since.epoch)}`, id);
      }
      return ok({ type: 'join', room, id, since: { seq: since.seq, epoch: since.epoch }, ...presence });
    }
    case 'publish': {
      if (!('data' in obj)) {
        return fail('bad_frame', 'publish needs a "data" field (any JSON value); omit "room" to broadcast to every client', id);
      }
      if (exceedsDepth(obj.data, MAX_DATA_DEPTH)) {
        return fail('bad_frame', `"data" nests arrays/objects more than ${MAX_DATA_DEPTH} levels deep; at most ${MAX_DATA_DEPTH} are allowed, send a flatter value`, id);
      }
      if (obj.room === undefined) return ok({ type: 'publish', data: obj.data, id });
      const room = checkRoom(obj.room, 'publish', id);
      if (typeof room !== 'string') return room;
      return ok({ type: 'publish', room, data: obj.data, id });
    }
    default:
      return fail('unknown_type', `unknown frame type ${JSON.stringify(obj.type)}; expected one of ${CLIENT_TYPES.join(', ')}`, id);
  }
}

/**
 * Serialises the outgoing `message` frame once; the same bytes go to every local socket and to the backplane.
 * `room` null means a broadcast, which carries no room field.
 */
export function encodeMessage(room: string | null, data: unknown, from: string): Buffer {
  const text =
    room === null
      ? `{"type":"message","data":${JSON.stringify(data)},"from":${JSON.stringify(from)}}`
      : `{"type":"message","room":${JSON.stringify(room)},"data":${JSON.stringify(data)},"from":${JSON.stringify(from)}}`;
  return Buffer.from(text, 'utf8');
}

export function encodeWelcome(connectionId: string, instanceId: string, protocol: ProtocolVersion = 1): string {
  return JSON.stringify({ type: 'welcome', connectionId, instanceId, protocol });
}

export function encodeAck(id: string | undefined, extra: Record<string, unknown> = {}): string {
  return JSON.stringify(id === undefined ? { type: 'ack', ...extra } : { type: 'ack', id, ...extra });
}

/**
 * Tells a member that the room continues from `position` and what it had is not continued by the frames that
 * follow: `epoch` when the room's history started again (Redis restarted, or the room expired), `lost` when the
 * relay could not fill a gap from the history. The client resynchronises the room, then resumes from `position`.
 */
export function encodeResync(room: string, position: { readonly seq: number; readonly epoch: string }, reason: 'epoch' | 'lost'): string {
  return JSON.stringify({ type: 'resync', room, position: { seq: String(position.seq), epoch: position.epoch }, reason });
}

/**
 * Tells a client its token expires at `exp` (seconds since the epoch) and the connection will be closed with
 * CLOSE_TOKEN_EXPIRED at `closeAt` (milliseconds since the epoch) unless it sends a `refresh` with a new token.
 */
export function encodeTokenExpiring(exp: number, closeAt: number): string {
  return JSON.stringify({ type: 'token_expiring', exp, closeAt });
}

/** One member of a room, as presence lists and joined/left events show it. */
export interface PresenceMember {
  /** The member's connection (the `connectionId` of its welcome). */
  readonly connectionId: string;
  /** The token's `sub`; null without token auth or without `sub`. */
  readonly user: string | null;
  /** The relay instance the connection is on. */
  readonly instanceId: string;
  /** When the member joined, in milliseconds since the epoch. */
  readonly since: number;
}

/** A member's JSON, with its fields always in this order: stored as is and spliced into frames without re-parsing. */
export function encodePresenceMember(member: PresenceMember): string {
  return `{"connectionId":${JSON.stringify(member.connectionId)},"user":${JSON.stringify(member.user)},"instanceId":${JSON.stringify(member.instanceId)},"since":${member.since}}`;
}

/** The start of a `joined`/`left` event; the member's JSON and a closing brace complete it (also in the Redis scripts). */
export function presenceEventHead(kind: 'joined' | 'left', room: string): string {
  return `{"type":"${kind}","room":${JSON.stringify(room)},"member":`;
}

/** `{"type":"joined"|"left","room","member"}` from the member's stored JSON. */
export function encodePresenceEvent(kind: 'joined' | 'left', room: string, memberJson: string): string {
  return `${presenceEventHead(kind, room)}${memberJson}}`;
}

/** The reply to a `presence` frame: up to RELAY_PRESENCE_LIST_MAX members and the exact count of every instance's members. */
export function encodePresence(id: string | undefined, room: string, members: readonly PresenceMember[], count: number): string {
  const list = members.map(encodePresenceMember).join(',');
  const head = id === undefined ? '{"type":"presence"' : `{"type":"presence","id":${JSON.stringify(id)}`;
  return `${head},"room":${JSON.stringify(room)},"members":[${list}],"count":${count}}`;
}

export function encodePong(id: string | undefined): string {
  return JSON.stringify(id === undefined ? { type: 'pong' } : { type: 'pong', id });
}

export function encodeError(err: ProtocolError): string {
  return JSON.stringify(
    err.id === undefined
      ? { type: 'error', code: err.code, message: err.message }
      : { type: 'error', id: err.id, code: err.code, message: err.message },
  );
}

function checkRoom(room: unknown, type: string, id: string | undefined): string | ({ ok: false } & ProtocolError) {
  if (typeof room !== 'string') {
    return fail('bad_frame', `${type} needs a "room" string; received ${describe(room)}`, id);
  }
  if (!ROOM_RE.test(room)) {
    return fail(
      'invalid_room',
      `room ${JSON.stringify(room.length > 140 ? `${room.slice(0, 140)}…` : room)} is invalid; use 1-128 characters of A-Z a-z 0-9 : _ . -`,
      id,
    );
  }
  return room;
}

function ok(frame: ClientFrame): ParseResult {
  return { ok: true, frame };
}

function fail(code: ErrorCode, message: string, id?: string): { ok: false } & ProtocolError {
  return id === undefined ? { ok: false, code, message } : { ok: false, code, message, id };
}

/** Whether a parsed JSON value nests deeper than `max`; iterative, so hostile input cannot overflow the stack here. */
export function exceedsDepth(value: unknown, max: number): boolean {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop() as { v: unknown; depth: number };
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push({ v: child, depth: depth + 1 });
    }
  }
  return false;
}

/** Like describe(), without ever repeating (part of) a token. */
function describeToken(v: unknown): string {
  return typeof v === 'string' ? `a string of ${v.length} characters` : describe(v);
}

/** A value as a message names it: its kind, or a string quoted and shortened. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 70 ? `${v.slice(0, 70)}…` : v)}`;
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
