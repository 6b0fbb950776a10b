/**
 * The server API's idempotency keys in Redis (docs/protocol.md, "Server API"): a key is stored with SET NX PX in the
 * same script that publishes, so a message is published at most once per key and window, and a repeated request gets
 * the first one's answer. The key sits in the hash slot of what it guards (see idempotencyKey in types.ts), so in
 * cluster mode the script runs on the shard that owns the room. Shared by the standalone and cluster backplanes; the
 * in-memory backplane keeps the keys in process (memory.ts). These scripts are not loaded ahead: the first request
 * on a node runs EVAL once (runScript's fallback), which is harmless since API requests are independent of each other.
 */
import { APPEND_SCRIPT, runScript, type LuaScript, type SendCommand } from './history';
import { PUBLISH_TIMEOUT_MS, describeError, withTimeout } from './redis-common';
import { BackplaneUnavailableError, type OnceAppend } from './types';
import { createHash } from 'node:crypto';

/**
 * The append script, run once per key. KEYS: the append script's key for one message, then the idempotency key
 * (last). ARGV: the append script's arguments for that one message (history.ts appendArgs), then the window in
 * milliseconds (last); both extras are removed before the append script runs, unchanged, as a local function (KEYS
 * and ARGV are tables it reads), so it stays the one place that numbers, stores and publishes. It answers one stream
 * id `<epoch>-<seq>` per message. Returns {'new', '<epoch>-<seq>'}, or {'dup', '<epoch>-<seq>'} with the first
 * message's position when the key was seen within the window (nothing is appended).
 */
export const appendOnceLua = (append: string): string => `
local idem, window = KEYS[#KEYS], ARGV[#ARGV]
local stored = redis.call('GET', idem)
if stored then return {'dup', stored} end
KEYS[#KEYS] = nil
ARGV[#ARGV] = nil
local function append()
${append}
end
local position = append()[1]
redis.call('SET', idem, position, 'PX', window)
return {'new', position}
`;

/**
 * A publish made once per key. KEYS: the idempotency key. ARGV: publish command (PUBLISH or SPUBLISH), channel,
 * payload, window in milliseconds. Returns 1 when published, 0 when the key was seen within the window.
 */
const PUBLISH_ONCE_LUA = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[4]) then return 0 end
redis.call(ARGV[1], ARGV[2], ARGV[3])
return 1
`;

function script(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

export const APPEND_ONCE_SCRIPT = script(appendOnceLua(APPEND_SCRIPT.source));
export const PUBLISH_ONCE_SCRIPT = script(PUBLISH_ONCE_LUA);

/**
 * Runs the append script once per `idem` key and window (the append-once script) and returns the message's position,
 * or the first one's. `appendKeys`/`appendArgs` are exactly what the append script takes. (Appends without a key go
 * through the batcher, append-batch.ts.)
 */
export async function appendOnceWithScript(
  send: SendCommand,
  store: string,
  appendKeys: readonly string[],
  appendArgs: Array<string | Buffer>,
  idem: { readonly key: string; readonly windowMs: number },
): Promise<OnceAppend> {
  let reply: unknown;
  const run = runScript(send, APPEND_ONCE_SCRIPT, [...appendKeys, idem.key], [...appendArgs, String(idem.windowMs)]);
  try {
    reply = await withTimeout(run, PUBLISH_TIMEOUT_MS, () => new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`));
  } catch (err) {
    throw new BackplaneUnavailableError(`publishing to ${store} failed (${describeError(err)}); retry shortly`);
  }
  return parseAppendOnceReply(reply);
}

/** Runs the publish-once script; resolves true when published, false for a repeated key. */
export async function publishOnceWithScript(
  send: SendCommand,
  store: string,
  idemKey: string,
  command: 'PUBLISH' | 'SPUBLISH',
  channel: string,
  payload: Buffer,
  windowMs: number,
): Promise<boolean> {
  let reply: unknown;
  try {
    reply = await withTimeout(runScript(send, PUBLISH_ONCE_SCRIPT, [idemKey], [command, channel, payload, String(windowMs)]), PUBLISH_TIMEOUT_MS,
      () => new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`));
  } catch (err) {
    throw new BackplaneUnavailableError(`publishing to ${store} failed (${describeError(err)}); retry shortly`);
  }
  return Number(Buffer.isBuffer(reply) ? reply.toString('latin1') : reply) === 1;
}

/** {'new' | 'dup', '<epoch>-<seq>'} → OnceAppend; throws on any other shape. */
export function parseAppendOnceReply(reply: unknown): OnceAppend {
  const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v));
  const parts = Array.isArray(reply) ? reply.map(text) : [];
  // The epoch may itself contain '-': the seq is what follows the last one.
  const match = parts.length === 2 && (parts[0] === 'new' || parts[0] === 'dup') ? /^(.+)-(\d+)$/.exec(parts[1] ?? '') : null;
  const seq = Number(match?.[2]);
  if (match === null || !Number.isSafeInteger(seq)) throw new Error(`unexpected append-once reply: ${parts.join(' ') || String(reply)}`);
  return { position: { seq, epoch: match[1] ?? '' }, duplicate: parts[0] === 'dup' };
}
