/**
 * The server API (docs/protocol.md, "Server API"): an application's backend publishes to rooms, broadcasts, sends to
 * users and disconnects them over HTTP on the public port, with a bearer key (RELAY_API_KEY). Off (404) without one.
 *
 *   POST /api/publish     {"room"?, "user"?, "data", "idempotencyKey"?}  → 200 {"seq","epoch"} | {"published":true}
 *   POST /api/disconnect  {"user"} | {"connectionId"}                     → 200 {"closed","instances"}
 *   GET  /api/rooms/<room>[?members=1]                                     → 200 {"members","instances","position"[,"presence"]}
 *
 * Errors are `{"error":{"code","message"}}` with the wire protocol's codes; nothing is delivered on any error.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import * as z from 'zod';
import { BackplaneUnavailableError, type Backplane, type Once } from '../backplane/types';
import type { ServiceConfig } from '../config';
import type { ServerControl } from '../core/control';
import { takeToken, type TokenBucket } from '../core/rate-limit';
import { MAX_DATA_DEPTH, ROOM_RE, describe, encodeMessage, exceedsDepth, type ErrorCode } from '../protocol';
import type { ApiKeys } from './api-keys';
import type { RequestTarget } from './request-target';
import { sendJson } from './responses';

/** The `from` of messages published through the server API (connection ids are 12 characters, so never this). */
export const API_SENDER = 'server';
export const API_PREFIX = '/api/';

const IDEMPOTENCY_KEY_RE = /^[A-Za-z0-9:_.-]{1,128}$/;
const MAX_SUB_LENGTH = 256;
const CONNECTION_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export interface ServerApiDeps {
  readonly config: ServiceConfig;
  readonly backplane: Backplane;
  /** Local delivery, as the backplane's frame handler does it (history off: the publishing instance delivers itself). */
  readonly deliver: (room: string | null, frame: Buffer) => void;
  readonly control: ServerControl;
  readonly logger: Logger;
  /** The instance-wide request budget (RELAY_API_RATE_LIMIT). */
  readonly bucket: TokenBucket;
}

/** A refusal: HTTP status, wire error code, message. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'not_found' | 'method_not_allowed',
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The request budget of one instance: the bucket starts full. */
export function apiBucket(config: ServiceConfig): TokenBucket {
  return { tokens: config.apiRateLimit, lastRefill: Date.now(), rejects: 0, rejectWindowStart: 0 };
}

/** Whether a request is for the server API (under /api/). */
export function isServerApiPath(path: string): boolean {
  return path === '/api' || path.startsWith(API_PREFIX);
}

/** Answers one request under /api/. With RELAY_API_KEY unset the API does not exist: 404 like any unknown path. */
export async function handleServerApi(req: IncomingMessage, res: ServerResponse, target: RequestTarget, deps: ServerApiDeps): Promise<void> {
  const keys = deps.config.apiKeys;
  if (keys === null) {
    sendJson(res, 404, { error: 'not_found', message: `no such path: ${target.path}` });
    return;
  }
  try {
    const body = await route(req, target, keys, deps);
    sendJson(res, 200, body);
  } catch (err) {
    const e =
      err instanceof ApiError
        ? err
        : err instanceof BackplaneUnavailableError
          ? new ApiError(503, 'backplane_unavailable', `${err.message}; nothing was delivered`, { 'Retry-After': '1' })
          : undefined;
    if (e === undefined) throw err;
    if (e.status >= 500) deps.logger.warn({ code: e.code, path: target.path }, 'server API request failed');
    sendJson(res, e.status, { error: { code: e.code, message: e.message } }, e.headers);
    // A body left unread (refused before reading, or too large) is not drained: the connection ends with the answer.
    if (!req.complete) res.once('finish', () => req.socket.destroySoon());
  }
}

async function route(req: IncomingMessage, target: RequestTarget, keys: ApiKeys, deps: ServerApiDeps): Promise<unknown> {
  const { path } = target;
  const post = path === '/api/publish' || path === '/api/disconnect';
  const roomPath = path.startsWith('/api/rooms/') ? path.slice('/api/rooms/'.length) : undefined;
  if (!post && roomPath === undefined) throw new ApiError(404, 'not_found', `no server API endpoint at ${path}; see docs/protocol.md "Server API"`);
  const method = post ? 'POST' : 'GET';
  if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
    throw new ApiError(405, 'method_not_allowed', `${req.method ?? 'this method'} is not supported on ${path}; use ${method}`, { Allow: method === 'GET' ? 'GET, HEAD' : 'POST' });
  }
  authorize(req, keys);
  if (takeToken(deps.bucket, { rateLimit: deps.config.apiRateLimit, rateBurst: deps.config.apiRateLimit, rateLimitMaxRejects: Infinity }) !== 'ok') {
    throw new ApiError(429, 'rate_limited', `over RELAY_API_RATE_LIMIT=${deps.config.apiRateLimit} requests per second on this instance; retry shortly`, { 'Retry-After': '1' });
  }
  if (roomPath !== undefined) return roomInfo(decodeRoom(roomPath), listMembers(target.query, deps.config), deps);
  const body = await readJson(req, deps.config.maxPayloadBytes);
  return path === '/api/publish' ? publish(body, deps) : disconnect(body, deps);
}

/** `Authorization: Bearer <key>` against the configured keys (ApiKeys compares with each in constant time). */
function authorize(req: IncomingMessage, keys: ApiKeys): void {
  const header = req.headers.authorization;
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  const refuse = (why: string): ApiError => new ApiError(401, 'unauthorized', `${why}; send Authorization: Bearer <RELAY_API_KEY>`, { 'WWW-Authenticate': 'Bearer realm="relay"' });
  if (match === null) throw refuse(header === undefined ? 'no Authorization header' : 'the Authorization header is not a Bearer key');
  if (!keys.accepts(match[1])) throw refuse('the key is not valid');
}

/** Reads the body as JSON, refusing a wrong content type (415), more than `limit` bytes (413) and bad JSON (400). */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new ApiError(415, 'bad_frame', `the body must be JSON: send Content-Type: application/json (received ${type ? JSON.stringify(type) : 'none'})`);
  }
  const tooLarge = (): ApiError => new ApiError(413, 'too_large', `the body is over RELAY_MAX_PAYLOAD_BYTES=${limit} bytes; send less data`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const body = await readBody(req, limit, tooLarge);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new ApiError(400, 'bad_frame', 'the body is not valid JSON; send one JSON object such as {"room":"lobby","data":{"text":"hi"}}');
  }
}

/** The request body, or `tooLarge()` once it passes `limit` bytes (the rest is not read). */
function readBody(req: IncomingMessage, limit: number, tooLarge: () => ApiError): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.pause();
      reject(tooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

const publishSchema = z.strictObject({
  room: z.string().regex(ROOM_RE).optional(),
  user: z.string().min(1).max(MAX_SUB_LENGTH).optional(),
  data: z.unknown(),
  idempotencyKey: z.string().regex(IDEMPOTENCY_KEY_RE).optional(),
});

const disconnectSchema = z.strictObject({
  user: z.string().min(1).max(MAX_SUB_LENGTH).optional(),
  connectionId: z.string().regex(CONNECTION_ID_RE).optional(),
});

/** What each field must be, for the messages of a refused body. */
const FIELD_RULES: Record<string, string> = {
  room: 'a room name of 1-128 characters of A-Z a-z 0-9 : _ . -',
  user: `a token "sub" of 1-${MAX_SUB_LENGTH} characters`,
  idempotencyKey: 'a key of 1-128 characters of A-Z a-z 0-9 : _ . -',
  connectionId: 'the connectionId of a welcome frame',
};

/** Validates a body with zod; the first problem becomes the wire protocol's code (invalid_room or bad_frame). */
function parseBody<T>(schema: z.ZodType<T>, body: unknown, example: string): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'bad_frame', `the body must be a JSON object such as ${example}`);
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path[0] === undefined ? undefined : String(issue.path[0]);
  if (issue?.code === 'unrecognized_keys') throw new ApiError(400, 'bad_frame', `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; expected ${example}`);
  const rule = field === undefined ? undefined : FIELD_RULES[field];
  const message = `"${field ?? 'body'}" must be ${rule ?? 'valid'}; received ${describe(field === undefined ? body : (body as Record<string, unknown>)[field])}`;
  throw new ApiError(400, field === 'room' ? 'invalid_room' : 'bad_frame', message);
}

async function publish(body: unknown, deps: ServerApiDeps): Promise<unknown> {
  const example = '{"room":"lobby","data":{"text":"hi"}}';
  if (body !== null && typeof body === 'object' && !Array.isArray(body) && !('data' in body)) {
    throw new ApiError(400, 'bad_frame', `publish needs a "data" field (any JSON value), e.g. ${example}`);
  }
  const input = parseBody(publishSchema, body, example);
  if (exceedsDepth(input.data, MAX_DATA_DEPTH)) throw new ApiError(400, 'bad_frame', `"data" nests arrays/objects more than ${MAX_DATA_DEPTH} levels deep; send a flatter value`);
  if (input.room !== undefined && input.user !== undefined) throw new ApiError(400, 'bad_frame', 'give "room" or "user", not both (no room and no user = a broadcast)');
  const { config, backplane } = deps;
  const once: Once | undefined = input.idempotencyKey === undefined ? undefined : { key: input.idempotencyKey, windowMs: config.apiIdempotencyWindowMs };
  if (input.user !== undefined) {
    const frame = `{"type":"message","user":${JSON.stringify(input.user)},"data":${JSON.stringify(input.data)},"from":"${API_SENDER}"}`;
    checkSize(Buffer.byteLength(frame), config.maxPayloadBytes);
    await deps.control.publishToUser(input.user, frame, once);
    return { published: true };
  }
  const room = input.room ?? null;
  const frame = encodeMessage(room, input.data, API_SENDER);
  checkSize(frame.length, config.maxPayloadBytes);
  if (backplane.historyEnabled) {
    const { position } = await backplane.appendOnce(room, frame, once);
    // A string, as in message frames and join acks.
    return { seq: String(position.seq), epoch: position.epoch };
  }
  // Without history this instance delivers its own publishes (the backplane drops its echo), after the publish.
  if (await backplane.publishOnce(room, frame, once)) deps.deliver(room, frame);
  return {};
}

async function disconnect(body: unknown, deps: ServerApiDeps): Promise<unknown> {
  const input = parseBody(disconnectSchema, body, '{"user":"<sub>"} or {"connectionId":"<id>"}');
  if ((input.user === undefined) === (input.connectionId === undefined)) {
    throw new ApiError(400, 'bad_frame', 'give exactly one of "user" (a token sub) or "connectionId" (from a welcome frame)');
  }
  const target = input.user !== undefined ? { user: input.user } : { connectionId: input.connectionId as string };
  const gathered = await deps.control.disconnect(target);
  return { closed: gathered.total, instances: gathered.instances };
}

async function roomInfo(room: string, withPresence: boolean, deps: ServerApiDeps): Promise<unknown> {
  const [members, position, presence] = await Promise.all([
    deps.control.countMembers(room),
    deps.backplane.historyEnabled ? deps.backplane.readHistory(room, undefined).then((r) => r.position) : Promise.resolve(null),
    withPresence ? deps.control.listPresence(room, deps.config.presenceListMax) : Promise.resolve(undefined),
  ]);
  const info = { room, members: members.total, instances: members.instances, position };
  return presence === undefined ? info : { ...info, presence: { count: presence.count, members: presence.members } };
}

/** `?members=1` asks for the room's presence list (RELAY_PRESENCE on); `0` or no parameter leaves it out. */
function listMembers(query: URLSearchParams, config: ServiceConfig): boolean {
  const value = query.get('members');
  if (value === null || value === '0') return false;
  if (value !== '1') throw new ApiError(400, 'bad_frame', `"members" must be 1 (list the room's members) or 0; received ${JSON.stringify(value.slice(0, 70))}`);
  if (!config.presence) {
    throw new ApiError(400, 'presence_disabled', 'presence is turned off on this relay (RELAY_PRESENCE=off): the members cannot be listed; ask without ?members=1');
  }
  return true;
}

function checkSize(bytes: number, limit: number): void {
  if (bytes > limit) throw new ApiError(413, 'too_large', `the message frame would be ${bytes} bytes, over RELAY_MAX_PAYLOAD_BYTES=${limit}; send less data`);
}

/** The room of /api/rooms/<room>, percent-decoded; invalid_room when it is not a room name. */
function decodeRoom(raw: string): string {
  let room: string;
  try {
    room = decodeURIComponent(raw);
  } catch {
    room = raw;
  }
  if (!ROOM_RE.test(room)) throw new ApiError(400, 'invalid_room', `room ${JSON.stringify(room.slice(0, 140))} is invalid; use 1-128 characters of A-Z a-z 0-9 : _ . -`);
  return room;
}
