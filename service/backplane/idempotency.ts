/**
 * The server API's idempotency keys in Redis (docs/protocol.md, "Server API"): a key is stored with SET NX PX in the
 * same script that publishes, so a message is published at most once per key and window, and a repeated request gets
 * the first one's answer. The key sits in the hash slot of what it guards (see idempotencyKey in types.ts), so in
 * cluster mode the script runs on the shard that owns the room. Shared by the standalone and cluster backplanes; the
 * in-memory backplane keeps the keys in process (memory.ts).
 */
import { APPEND_SCRIPT, runScript, type LuaScript, type SendCommand } from './history';
import { PUBLISH_TIMEOUT_MS, describeError, withTimeout } from './redis-common';
import { BackplaneUnavailableError, type OnceAppend } from './types';
import { createHash } from 'node:crypto';

/**
 * The append script, run once per key. KEYS: the append script's key for one message, then the idempotency key
 * (last). ARGV: the append script's arguments for that one message (history.ts appendArgs), then the window in
 * milliseconds (last). The append script runs unchanged as a local function (KEYS and ARGV are globals; it counts
 * its messages from ARGV in fives, so the extra last argument is not one), so it stays the one place that numbers,
 * stores and publishes. Returns {seq, epoch} for a new message, {'dup', '<seq> <epoch>'} when the key was seen
 * within the window.
 */
const APPEND_ONCE_LUA = `
local stored = redis.call('GET', KEYS[#KEYS])
if stored then return {'dup', stored} end
local function append()
${APPEND_SCRIPT.source}
end
local epoch, seq = string.match(append()[1], '^(%d+)-(%d+)$')
redis.call('SET', KEYS[#KEYS], seq .. ' ' .. epoch, 'PX', ARGV[#ARGV])
return {seq, epoch}
`;

/** The append script for one message, returning the position it gave the message, {seq, epoch}. */
const APPEND_POSITION_LUA = `
local function append()
${APPEND_SCRIPT.source}
end
local epoch, seq = string.match(append()[1], '^(%d+)-(%d+)$')
return {seq, epoch}
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

export const APPEND_ONCE_SCRIPT = script(APPEND_ONCE_LUA);
export const PUBLISH_ONCE_SCRIPT = script(PUBLISH_ONCE_LUA);
export const APPEND_POSITION_SCRIPT = script(APPEND_POSITION_LUA);

/**
 * Runs the append script and returns the message's position: once per `idem` key and window when given (the
 * append-once script), else unconditionally. `appendKeys`/`appendArgs` are exactly what the append script takes.
 */
export async function appendOnceWithScript(
  send: SendCommand,
  store: string,
  appendKeys: readonly string[],
  appendArgs: Array<string | Buffer>,
  idem: { readonly key: string; readonly windowMs: number } | undefined,
): Promise<OnceAppend> {
  let reply: unknown;
  const run =
    idem === undefined
      ? runScript(send, APPEND_POSITION_SCRIPT, appendKeys, appendArgs)
      : runScript(send, APPEND_ONCE_SCRIPT, [...appendKeys, idem.key], [...appendArgs, String(idem.windowMs)]);
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

/** {seq, epoch} or {'dup', '<seq> <epoch>'} → OnceAppend; throws on any other shape. */
export function parseAppendOnceReply(reply: unknown): OnceAppend {
  const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v));
  if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected append-once reply: ${String(reply)}`);
  const [first, second] = reply.map(text) as [string, string];
  const duplicate = first === 'dup';
  const [seqText, epoch] = duplicate ? second.split(' ') : [first, second];
  const seq = Number(seqText);
  if (!Number.isSafeInteger(seq) || epoch === undefined || epoch === '') throw new Error(`unexpected append-once reply: ${reply.map(text).join(' ')}`);
  return { position: { seq, epoch }, duplicate };
}
