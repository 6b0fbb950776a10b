/**
 * Message history for recovery (issue 6): the Lua scripts that number, store and publish a room's messages in
 * one atomic step, the script that reads a room's position and the messages after a client's `since`, and the
 * rules that decide whether a gap can be filled. Shared by the standalone and cluster Redis backplanes; the
 * in-memory backplane applies the same rules in-process (see memory.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { RESP_TYPES } from '@redis/client';

/** Sizing of every room's history; `size` 0 turns recovery off. */
export interface HistoryOptions {
  /** Messages kept per room (exact MAXLEN); 0 = no history, no seq/epoch, the plain publish path. @default 1000 */
  readonly size: number;
  /** A room's history (and its epoch) is dropped after this many seconds without a publish or join. @default 300 */
  readonly ttlSeconds: number;
  /** Largest gap a join with `since` may replay; a larger gap is answered recovered:false. @default 1000 */
  readonly replayMax: number;
  /** Bytes kept per room (RELAY_HISTORY_MAX_BYTES): the oldest messages are dropped beyond it, the newest always stays. @default no byte budget */
  readonly maxBytes?: number;
}

/**
 * The MAXLEN a room's stream is trimmed to when an entry of `entryBytes` bytes is appended: the count `size`, and
 * the byte budget as a count, floor(maxBytes / entryBytes), never below 1 (the newest entry always stays). The
 * append's own XADD trims with it, so the byte budget costs no extra Redis command; see historyBytesBound for
 * what it guarantees.
 */
export function streamMaxlen(history: HistoryOptions, entryBytes: number): number {
  if (history.maxBytes === undefined) return history.size;
  return Math.max(1, Math.min(history.size, Math.floor(history.maxBytes / Math.max(1, entryBytes))));
}

/**
 * Most entry bytes one room's stream can hold under streamMaxlen, with entries of at most `maxEntryBytes`. An entry
 * that is j-th oldest in the stream was appended while the stream held at least j entries and was trimmed to
 * floor(maxBytes / its size), so its size is at most maxBytes / j (j ≥ 2; the oldest may be any size). A decreasing
 * sequence of sizes reaches the bound, so it is exact: P + Σ_{j=2..S} min(P, floor(B / j)) ≈ B × (1 + ln(S × P / B)).
 */
export function historyBytesBound(size: number, maxBytes: number | undefined, maxEntryBytes: number): number {
  if (maxBytes === undefined) return size * maxEntryBytes;
  let total = size > 0 ? maxEntryBytes : 0;
  for (let j = 2; j <= size; j++) total += Math.min(maxEntryBytes, Math.floor(maxBytes / j));
  return total;
}

export const HISTORY_OFF: HistoryOptions = { size: 0, ttlSeconds: 300, replayMax: 1000 };

/** A point in a room's history: the last message a client has, in the room's current epoch. */
export interface HistoryPosition {
  /** Decimal string; the first message of an epoch is "1", "0" means nothing published yet. */
  readonly seq: string;
  readonly epoch: string;
}

/** Why a `since` could not be served; `none` when the join asked for no recovery, `budget` when the gap is over the connection's replay budget. */
export type RecoveryOutcome = 'ok' | 'none' | 'epoch' | 'trimmed' | 'cap' | 'future' | 'budget';

/** Limits of one history read. */
export interface ReadLimits {
  /** Most frames returned (a page); the rest of the gap is read with `since` = the last frame returned. @default the replay cap */
  readonly limit?: number;
}

/** What a join learns from the history: the room's position and, when the gap can be filled, the frames after `since`. */
export interface HistoryRead {
  readonly position: HistoryPosition;
  readonly outcome: RecoveryOutcome;
  /** Frames after `since`, oldest first, at most the read's limit; empty unless outcome is 'ok'. */
  readonly frames: readonly Buffer[];
}

/**
 * A room's history is one stream whose entry ids are `<epoch>-<seq>`: the epoch is the stream id's first part, so the
 * stream alone holds the room's position and nothing else has to be read on the fast path. An epoch is the Redis
 * server's clock in microseconds when the room's history started (`TIME`), so a room that starts again after its
 * history was lost (expiry, a Redis restart, a flush) gets a new epoch. Entries hold the frame without its closing
 * brace; seq and epoch are appended when a frame is published or replayed.
 */
const NEW_EPOCH_LUA = `
local function new_epoch()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
local function stream_epoch(key)
  local info = redis.pcall('XINFO', 'STREAM', key)
  if type(info) ~= 'table' or info.err then return nil end
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local epoch, seq = string.match(info[i + 1], '^(%d+)-(%d+)$')
      -- An epoch of 0 is a history numbered by an older relay: start again rather than mix the numberings.
      if epoch == nil or epoch == '0' then return nil end
      return epoch, seq
    end
  end
  return nil
end
`;

/**
 * Publish with history, many messages per call. KEYS: one history stream per message. ARGV: publish command
 * (PUBLISH or SPUBLISH), instance id, TTL seconds, then five per message: channel, frame without its closing brace,
 * MAXLEN (0 = keep no entries), the epoch the caller last saw for the room ('' = unknown), '1' to refresh the TTL.
 *
 * Fast path (the caller's epoch is current): XADD NOMKSTREAM `<epoch>-*` numbers and stores the message in one
 * command, then PUBLISH — 2 commands per message inside one EVALSHA per batch. XADD fails when the stream's epoch is
 * newer than the caller's, and answers `<epoch>-0` when it is older (the id part restarts at 0, which a current
 * epoch never gives since a stream's ids start at `<epoch>-0` or later); both fall back to the slow path, which reads
 * the stream's epoch, or starts a new one (dropping the stream) when there is none or the stream was touched by a
 * stale epoch. Returns one `<epoch>-<seq>` per message. The envelope is `<instanceId>#<seq> <frame>`.
 */
const APPEND_LUA = NEW_EPOCH_LUA + `
local n = math.floor((#ARGV - 3) / 5)
local out = {}
for i = 1, n do
  local key = KEYS[i]
  local a = 3 + (i - 1) * 5
  local head, maxlen, epoch = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local id = false
  local refresh = ARGV[a + 5] == '1'
  if epoch ~= '' then
    id = redis.pcall('XADD', key, 'NOMKSTREAM', 'MAXLEN', maxlen, epoch .. '-*', 'f', head)
    if type(id) == 'table' then
      id = false
    elseif id and string.sub(id, -2) == '-0' then
      redis.call('DEL', key)
      id = false
    end
  end
  if not id then
    local current, seq = stream_epoch(key)
    if current then
      id = redis.call('XADD', key, 'MAXLEN', maxlen, current .. '-*', 'f', head)
    else
      redis.call('DEL', key)
      id = redis.call('XADD', key, 'MAXLEN', maxlen, new_epoch() .. '-1', 'f', head)
      refresh = true
    end
  end
  if refresh then redis.call('EXPIRE', key, ARGV[3]) end
  local e, s = string.match(id, '^(%d+)-(%d+)$')
  redis.call(ARGV[1], ARGV[a + 1], ARGV[2] .. '#' .. s .. ' ' .. head .. ',"seq":"' .. s .. '","epoch":"' .. e .. '"}')
  out[i] = id
end
return out
`;

/**
 * Position and replay, one page at a time. KEYS: history stream. ARGV: TTL seconds, since seq ('' = no recovery
 * asked), since epoch, replay cap, page size (most frames returned). A join creates the room's epoch (an empty stream
 * at `<epoch>-0`), so a client that joined before anything was published can still resume from that position.
 * Returns {epoch, seq, outcome, frame...}.
 */
const READ_LUA = NEW_EPOCH_LUA + `
local key = KEYS[1]
local epoch, seq = stream_epoch(key)
if not epoch then
  epoch, seq = new_epoch(), '0'
  redis.call('DEL', key)
  redis.call('XADD', key, epoch .. '-0', 'f', '')
  redis.call('XDEL', key, epoch .. '-0')
end
redis.call('EXPIRE', key, ARGV[1])
if ARGV[2] == '' then return {epoch, seq, 'none'} end
if ARGV[3] ~= epoch then return {epoch, seq, 'epoch'} end
local since = tonumber(ARGV[2])
local last = tonumber(seq)
if since > last then return {epoch, seq, 'future'} end
local gap = last - since
if gap == 0 then return {epoch, seq, 'ok'} end
if gap > tonumber(ARGV[4]) then return {epoch, seq, 'cap'} end
local page = math.min(gap, tonumber(ARGV[5]))
local entries = redis.call('XRANGE', key, '(' .. epoch .. '-' .. ARGV[2], '+', 'COUNT', page)
if #entries < page or entries[1][1] ~= epoch .. '-' .. string.format('%d', since + 1) then return {epoch, seq, 'trimmed'} end
local out = {epoch, seq, 'ok'}
for i = 1, page do
  local s = string.match(entries[i][1], '-(%d+)$')
  out[i + 3] = entries[i][2][2] .. ',"seq":"' .. s .. '","epoch":"' .. epoch .. '"}'
end
return out
`;

export interface LuaScript {
  readonly source: string;
  readonly sha: string;
}

/** A Lua script with its SHA1, for EVALSHA (see TransportBackplane.runScript for scripts of other features). */
export function script(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

export const APPEND_SCRIPT = script(APPEND_LUA);
export const READ_SCRIPT = script(READ_LUA);

/** Replies as Buffers: frames stay bytes from Redis to the socket. */
export const BUFFER_REPLIES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.SIMPLE_STRING]: Buffer } } as const;

/** Sends one command (already routed for cluster); the Redis backplanes supply it. */
export type SendCommand = (args: Array<string | Buffer>) => Promise<unknown>;

/**
 * Loads both scripts into a node's cache. The backplanes do this before they report ready (and again on every new
 * connection or topology resync), because a NOSCRIPT fallback would reorder pipelined publishes: the EVAL retry of
 * message n goes out after message n+1's EVALSHA, which may succeed once the script is loaded.
 */
export async function loadScripts(send: SendCommand): Promise<void> {
  await Promise.all([APPEND_SCRIPT, READ_SCRIPT].map((lua) => send(['SCRIPT', 'LOAD', lua.source])));
}

/** EVALSHA, and EVAL when the server lost the script anyway (SCRIPT FLUSH, a failover the connection did not notice). */
export async function runScript(send: SendCommand, lua: LuaScript, keys: readonly string[], args: Array<string | Buffer>): Promise<unknown> {
  const tail = [String(keys.length), ...keys, ...args];
  try {
    return await send(['EVALSHA', lua.sha, ...tail]);
  } catch (err) {
    if (!/NOSCRIPT/.test(err instanceof Error ? err.message : String(err))) throw err;
    return send(['EVAL', lua.source, ...tail]);
  }
}

/** A room's history stream shares its channel's hash tag (one cluster slot); the broadcast stream uses the broadcast channel's slot. */
export function historyKey(prefix: string, room: string | null): string {
  return room === null ? `{${prefix}:broadcast}:history` : `${prefix}:history:{${room}}`;
}

/**
 * Epochs must differ every time a room's history starts again; a random per-process base plus a counter is unique
 * without a syscall per publish.
 */
export class EpochSource {
  readonly #base = randomBytes(6).toString('base64url');
  #n = 0;
  next(): string {
    this.#n++;
    return `${this.#base}${this.#n.toString(36)}`;
  }
}

/** The frame without its closing brace, which the script completes with seq and epoch. */
export function frameHead(frame: Buffer): Buffer {
  return frame.subarray(0, frame.length - 1);
}

/**
 * Arguments of the append script for one message whose room's epoch the caller does not know (the script reads it),
 * refreshing the TTL. The batcher (append-batch.ts) builds its own for many messages.
 */
export function appendArgs(
  command: 'PUBLISH' | 'SPUBLISH',
  channel: string,
  instanceId: string,
  frame: Buffer,
  storedSize: number,
  opts: HistoryOptions,
): Array<string | Buffer> {
  return [command, instanceId, String(opts.ttlSeconds), channel, frameHead(frame), String(storedSize), '', '1'];
}

/** Arguments of the read script, in ARGV order. */
export function readArgs(opts: HistoryOptions, since: HistoryPosition | undefined, limits: ReadLimits = {}): string[] {
  return [String(opts.ttlSeconds), since?.seq ?? '', since?.epoch ?? '', String(opts.replayMax), String(limits.limit ?? opts.replayMax)];
}

const OUTCOMES: readonly RecoveryOutcome[] = ['ok', 'none', 'epoch', 'trimmed', 'cap', 'future', 'budget'];

/** Turns the read script's reply into a HistoryRead; throws on a reply that does not have the script's shape. */
export function parseReadReply(reply: unknown): HistoryRead {
  if (!Array.isArray(reply) || reply.length < 3) throw new Error(`unexpected history read reply: ${String(reply)}`);
  const [epoch, seq, outcome, ...frames] = reply as unknown[];
  const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v));
  const o = text(outcome);
  if (!(OUTCOMES as readonly string[]).includes(o)) throw new Error(`unexpected history read outcome: ${o}`);
  return {
    position: { seq: text(seq), epoch: text(epoch) },
    outcome: o as RecoveryOutcome,
    frames: frames.map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(String(f)))),
  };
}

/** A message's place as the append script answers it: the stream id `<epoch>-<seq>`. */
export function parseAppendId(reply: unknown): HistoryPosition {
  const text = Buffer.isBuffer(reply) ? reply.toString('latin1') : String(reply);
  const match = /^(\d+)-(\d+)$/.exec(text);
  if (match === null || !Number.isSafeInteger(Number(match[2]))) throw new Error(`unexpected history append reply: ${text}`);
  return { epoch: match[1], seq: match[2] };
}

/**
 * The decision shared with the in-memory history: can `since` be served from a history whose newest seq is `last`
 * and that holds the `retained` newest messages?
 */
export function classify(since: HistoryPosition | undefined, epoch: string, last: number, retained: number, replayMax: number): RecoveryOutcome {
  if (since === undefined) return 'none';
  if (since.epoch !== epoch) return 'epoch';
  const from = Number(since.seq);
  if (from > last) return 'future';
  const gap = last - from;
  if (gap === 0) return 'ok';
  if (gap > replayMax) return 'cap';
  return gap > retained ? 'trimmed' : 'ok';
}
