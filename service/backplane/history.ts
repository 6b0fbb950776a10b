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
 * Publish with history. KEYS: meta hash, history stream. ARGV: publish command (PUBLISH or SPUBLISH), channel,
 * instance id, frame without its closing brace, MAXLEN (0 = keep no entries), TTL seconds, epoch to use if the
 * room has none. A missing meta hash means the history was lost or never existed: a new epoch starts and any
 * stale stream is dropped, so an old epoch's entries can never be served under the new one.
 * Returns the seq. The envelope is `<instanceId>#<seq> <frame>`.
 */
const APPEND_LUA = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[7]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('DEL', KEYS[2])
end
local seq = string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
local frame = ARGV[4] .. ',"seq":"' .. seq .. '","epoch":"' .. epoch .. '"}'
if ARGV[5] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '0-' .. seq, 'f', frame)
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call(ARGV[1], ARGV[2], ARGV[3] .. '#' .. seq .. ' ' .. frame)
return seq
`;

/**
 * Position and replay, one page at a time. KEYS: meta hash, history stream. ARGV: TTL seconds, epoch to use if the
 * room has none, since seq ('' = no recovery asked), since epoch, replay cap, page size (most frames returned). A join
 * creates the room's epoch (seq 0), so a client that joined before anything was published can still resume from
 * that position. Returns {epoch, seq, outcome, frame...}.
 */
const READ_LUA = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', '0')
  redis.call('DEL', KEYS[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
if ARGV[3] == '' then return {epoch, seq, 'none'} end
if ARGV[4] ~= epoch then return {epoch, seq, 'epoch'} end
local since = tonumber(ARGV[3])
local last = tonumber(seq)
if since > last then return {epoch, seq, 'future'} end
local gap = last - since
if gap == 0 then return {epoch, seq, 'ok'} end
if gap > tonumber(ARGV[5]) then return {epoch, seq, 'cap'} end
local page = math.min(gap, tonumber(ARGV[6]))
local entries = redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[3], '+', 'COUNT', page)
if #entries < page or entries[1][1] ~= '0-' .. (since + 1) then return {epoch, seq, 'trimmed'} end
local out = {epoch, seq, 'ok'}
for i = 1, page do out[i + 3] = entries[i][2][2] end
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

/** Key names: a room's keys share its channel's hash tag (one cluster slot); the broadcast keys use the broadcast channel's slot. */
export function historyKeys(prefix: string, room: string | null): [meta: string, history: string] {
  if (room === null) return [`{${prefix}:broadcast}:meta`, `{${prefix}:broadcast}:history`];
  return [`${prefix}:meta:{${room}}`, `${prefix}:history:{${room}}`];
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

/** Arguments of the append script, in ARGV order. */
export function appendArgs(
  command: 'PUBLISH' | 'SPUBLISH',
  channel: string,
  instanceId: string,
  frame: Buffer,
  storedSize: number,
  opts: HistoryOptions,
  epoch: string,
): Array<string | Buffer> {
  return [command, channel, instanceId, frameHead(frame), String(storedSize), String(opts.ttlSeconds), epoch];
}

/** Arguments of the read script, in ARGV order. */
export function readArgs(opts: HistoryOptions, epoch: string, since: HistoryPosition | undefined, limits: ReadLimits = {}): string[] {
  return [
    String(opts.ttlSeconds),
    epoch,
    since?.seq ?? '',
    since?.epoch ?? '',
    String(opts.replayMax),
    String(limits.limit ?? opts.replayMax),
  ];
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

/** Parses the script's seq reply (a bulk string) into a number. */
export function parseSeqReply(reply: unknown): number {
  const n = Number(Buffer.isBuffer(reply) ? reply.toString('latin1') : reply);
  if (!Number.isSafeInteger(n)) throw new Error(`unexpected history append reply: ${String(reply)}`);
  return n;
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
