/**
 * Presence in Redis (issue 18): a room's members on every instance, kept as
 *
 * - `<prefix>:presence:{<room>}`: a hash of connection id → the member's JSON,
 * - `<prefix>:presence-expiry:{<room>}`: a sorted set of connection id → expiry time (ms, Redis clock), and
 * - `<prefix>:presence-tracked:{<room>}`: the marker that somebody asked for the room's presence (`pending` while the
 *   instances record their members, then `ready`), living 2 × RELAY_PRESENCE_TTL_MS after the last watcher's refresh
 *   or query,
 *
 * all with the room's hash tag, so in a cluster they sit on the shard that owns the room (with its history and
 * channels). Entries exist only while the marker does: the enter script stores nothing without it. Each instance
 * refreshes its own members' entries; an entry whose instance died stops being refreshed, and a surviving instance
 * that has a watcher of the room removes it with the prune script. Every removal (leave, close, prune) happens in a
 * script that deletes the hash field and publishes the `left` event only when the field was there, so each member gets
 * exactly one `left`, whoever removes it.
 */
import { BackplaneUnavailableError, presenceChannel, type PresenceHandler, type PresenceList, type PresenceMember, type PresenceTiming, type TrackPhase } from './types';
import { script, type LuaScript } from './history';
import { encodePresenceMember, presenceEventHead } from '../protocol';

/** The Redis server's clock in ms: every instance's entries expire by one clock, whatever the instances' clocks say. */
const NOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * Add or refresh, if the room is tracked. KEYS: hash, expiry zset, marker. ARGV: publish command, channel, `joined`
 * event head, lifetime ms, key TTL ms, marker TTL ms (0: leave the marker's TTL alone), then connection id and member
 * JSON pairs. Without the marker nobody asked for the room (or nobody has for its TTL): the given members' entries are
 * removed without events (nobody watches) and the script returns -1. Otherwise a new member is announced, a known one
 * only gets a later expiry, and the script returns the number of new members.
 */
const ENTER_LUA = `${NOW_LUA}
if redis.call('EXISTS', KEYS[3]) == 0 then
  for i = 7, #ARGV, 2 do
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
  return -1
end
if tonumber(ARGV[6]) > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[6]) end
local expiry = now + tonumber(ARGV[4])
local added = 0
for i = 7, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    added = added + 1
    redis.call(ARGV[1], ARGV[2], ARGV[3] .. ARGV[i + 1] .. '}')
  end
  redis.call('ZADD', KEYS[2], expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return added
`;

/** Remove. KEYS: hash, expiry zset. ARGV: publish command, channel, `left` event head, then connection ids. Returns how many were there. */
const LEAVE_LUA = `
local removed = 0
for i = 4, #ARGV do
  local member = redis.call('HGET', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  if member then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call(ARGV[1], ARGV[2], ARGV[3] .. member .. '}')
    removed = removed + 1
  end
end
return removed
`;

/**
 * Prune. KEYS: hash, expiry zset. ARGV: publish command, channel, `left` event head, most entries removed per call.
 * Removes the entries whose expiry has passed, announces each, and returns their member JSON.
 */
const PRUNE_LUA = `${NOW_LUA}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local member = redis.call('HGET', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if member then
    redis.call('HDEL', KEYS[1], id)
    redis.call(ARGV[1], ARGV[2], ARGV[3] .. member .. '}')
    out[#out + 1] = member
  end
end
return out
`;

/**
 * Read. KEYS: hash, expiry zset, marker. ARGV: most members returned (0 = count only), marker TTL ms. Answers only when
 * the marker is `ready` (every instance recorded its members), and then keeps it alive; otherwise returns {-1}.
 * Counts live entries only (an expired one not pruned yet is not a member), so the count is exact even in a room
 * nobody prunes. Returns {count, json...}.
 */
const LIST_LUA = `${NOW_LUA}
if redis.call('GET', KEYS[3]) ~= 'ready' then return {-1} end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
local count = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local out = {count}
local limit = tonumber(ARGV[1])
if limit == 0 or count == 0 then return out end
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'LIMIT', 0, limit)
if #ids == 0 then return out end
for _, member in ipairs(redis.call('HMGET', KEYS[1], unpack(ids))) do
  if member then out[#out + 1] = member end
end
return out
`;

/**
 * Mark the room tracked. KEYS: marker. ARGV: `pending` (set unless there is one: the instances are recording their
 * members) or `ready` (they have), marker TTL ms.
 */
const TRACK_LUA = `
if ARGV[1] == 'pending' then
  redis.call('SET', KEYS[1], 'pending', 'NX', 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], 'ready', 'PX', ARGV[2])
end
return 1
`;

export const PRESENCE_SCRIPTS = {
  enter: script(ENTER_LUA),
  track: script(TRACK_LUA),
  leave: script(LEAVE_LUA),
  prune: script(PRUNE_LUA),
  list: script(LIST_LUA),
} as const;

/** Entries per script call: one call stays a few hundred KB and a few ms of Redis time, however large the room. */
export const PRESENCE_BATCH = 500;

/** Highest RELAY_PRESENCE_LIST_MAX: the ids go through Lua's unpack(), which is bounded by the Lua C stack (~8,000). */
export const PRESENCE_LIST_MAX_LIMIT = 1000;

/** Key names of a room's presence; the hash tag is the room's, as for its channels and history. */
export function presenceKeys(prefix: string, room: string): [hash: string, expiry: string, marker: string] {
  return [`${prefix}:presence:{${room}}`, `${prefix}:presence-expiry:{${room}}`, `${prefix}:presence-tracked:{${room}}`];
}

/** What the presence store needs of the Redis backplane (TransportBackplane's extension points). */
export interface PresenceHost {
  /** Runs a script on the node that owns keys[0]; rejects with BackplaneUnavailableError while down. */
  runScript(script: LuaScript, keys: readonly string[], args: Array<string | Buffer>): Promise<unknown>;
  /** Runs one command on the node that owns `key`; rejects with BackplaneUnavailableError while down. */
  command(key: string, args: Array<string | Buffer>): Promise<unknown>;
  /** Subscribes an extra channel, kept across reconnects. */
  listen(channel: string, handler: (message: Buffer) => void): Promise<void>;
  unlisten(channel: string): Promise<void>;
}

/**
 * Presence over one Redis (standalone or cluster): scripts routed by the room's keys, events on the room's presence
 * channel. `publish` is PUBLISH, or SPUBLISH in a cluster (the event stays on the room's shard).
 */
export class RedisPresenceStore {
  #handler: PresenceHandler | undefined;

  constructor(
    private readonly host: PresenceHost,
    private readonly prefix: string,
    private readonly publish: 'PUBLISH' | 'SPUBLISH',
  ) {}

  onEvent(handler: PresenceHandler): void {
    this.#handler = handler;
  }

  async enter(room: string, members: readonly PresenceMember[], timing: PresenceTiming, watched: boolean): Promise<number | null> {
    const markerTtl = watched ? String(timing.keyTtlMs) : '0';
    let added = 0;
    for (let i = 0; i < members.length; i += PRESENCE_BATCH) {
      const args = [this.publish, presenceChannel(this.prefix, room), presenceEventHead('joined', room), String(timing.lifetimeMs), String(timing.keyTtlMs), markerTtl];
      for (const m of members.slice(i, i + PRESENCE_BATCH)) args.push(m.connectionId, encodePresenceMember(m));
      const n = Number(await this.run(PRESENCE_SCRIPTS.enter, room, args));
      if (n < 0) return null;
      added += n;
    }
    return added;
  }

  async track(room: string, timing: PresenceTiming, phase: TrackPhase): Promise<void> {
    await this.host.runScript(PRESENCE_SCRIPTS.track, [presenceKeys(this.prefix, room)[2]], [phase, String(timing.keyTtlMs)]);
  }

  /** Whether each room's marker exists: one EXISTS per room on its node, PRESENCE_BATCH of them sent together. */
  async tracked(rooms: readonly string[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let i = 0; i < rooms.length; i += PRESENCE_BATCH) {
      const markers = rooms.slice(i, i + PRESENCE_BATCH).map((room) => presenceKeys(this.prefix, room)[2]);
      const replies = await Promise.all(markers.map((key) => this.host.command(key, ['EXISTS', key])));
      for (const n of replies) out.push(Number(n) === 1);
    }
    return out;
  }

  async leave(room: string, connectionIds: readonly string[]): Promise<number> {
    let removed = 0;
    for (let i = 0; i < connectionIds.length; i += PRESENCE_BATCH) {
      const args = [this.publish, presenceChannel(this.prefix, room), presenceEventHead('left', room), ...connectionIds.slice(i, i + PRESENCE_BATCH)];
      removed += Number(await this.run(PRESENCE_SCRIPTS.leave, room, args));
    }
    return removed;
  }

  async prune(room: string): Promise<number> {
    const args = [this.publish, presenceChannel(this.prefix, room), presenceEventHead('left', room), String(PRESENCE_BATCH)];
    const reply = await this.run(PRESENCE_SCRIPTS.prune, room, args);
    return Array.isArray(reply) ? reply.length : 0;
  }

  async list(room: string, limit: number, timing: PresenceTiming): Promise<PresenceList | null> {
    const reply = await this.run(PRESENCE_SCRIPTS.list, room, [String(limit), String(timing.keyTtlMs)]);
    if (!Array.isArray(reply) || reply.length === 0) throw new BackplaneUnavailableError(`unexpected presence reply: ${String(reply)}`);
    const [count, ...members] = reply as unknown[];
    if (Number(count) < 0) return null;
    return { count: Number(count), members: members.map((m) => JSON.parse(String(m)) as PresenceMember) };
  }

  /** Events of the room go to the handler while watched; no envelope, every instance delivers each event once. */
  watch(room: string): Promise<void> {
    return this.host.listen(presenceChannel(this.prefix, room), (message) => this.#handler?.(room, message));
  }

  unwatch(room: string): Promise<void> {
    return this.host.unlisten(presenceChannel(this.prefix, room));
  }

  private run(lua: LuaScript, room: string, args: string[]): Promise<unknown> {
    return this.host.runScript(lua, presenceKeys(this.prefix, room), args);
  }
}
