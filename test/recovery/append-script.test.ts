/**
 * The append script's cost and its fast path: a relay remembers each room's epoch and numbers a message with one
 * XADD; when the room's history changed under it (expired, restarted by another relay, or numbered by a stale
 * epoch) the script must still give every message its right place.
 */
import { expect } from '@jest/globals';
import { historyBytesBound } from '../../service/backplane/history';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import type { RedisServer } from '../helpers/redis-server';
import type { TestClient } from '../helpers/ws-client';
import { expectConsecutive, join, publish, publishAll, roomMessages, streamPosition, waitForCondition } from './recovery-helpers';

jest.setTimeout(120_000);

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

/**
 * Commands Redis processed, less the relays' ROLE checks: each relay asks ROLE once a second on its publishing
 * connection to notice a demoted primary, whatever the traffic, so they are not a cost of the messages.
 */
async function commandsProcessed(redis: RedisServer): Promise<number> {
  const stats = await redis.cli('INFO', 'stats', 'commandstats');
  const match = /total_commands_processed:(\d+)/.exec(stats);
  if (match === null) throw new Error(`no total_commands_processed in INFO stats: ${stats.slice(0, 200)}`);
  const roles = /cmdstat_role:calls=(\d+)/.exec(stats);
  return Number(match[1]) - Number(roles?.[1] ?? 0);
}

/** Publishes one message and returns the frame every member then receives. */
async function publishAndReceive(publisher: TestClient, reader: TestClient, room: string, data: string) {
  expect(await publish(publisher, room, data)).toMatchObject({ type: 'ack' });
  await waitForCondition(reader, () => roomMessages(reader, room).some((m) => m.data === data), `message ${data}`);
  return roomMessages(reader, room).find((m) => m.data === data)!;
}

/** Entries of a room's stream and the sum of their stored frame bytes, read inside Redis. */
async function streamBytes(redis: RedisServer, key: string): Promise<{ count: number; bytes: number }> {
  const script = "local n, b = 0, 0 for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do n = n + 1 b = b + #e[2][2] end return {n, b}";
  const [count, bytes] = (await redis.cli('EVAL', script, '1', key)).trim().split('\n').map(Number);
  return { count, bytes };
}

describe('the append script', () => {
  it('costs Redis at most 3 commands per message when many rooms of 4 members publish at once', async () => {
    const redis = await redisServers.start();
    // Presence off: its periodic refresh of the members' entries is not a cost of the messages either.
    const [r1, r2] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'cost', RELAY_PRESENCE: 'off' }));
    const rooms = Array.from({ length: 10 }, (_, i) => `room-${i}`);
    // 4 members per room, two on each relay; every member publishes to every room.
    const members = await Promise.all([r1, r1, r2, r2].map((r) => clients.connect(r)));
    for (const m of members) for (const room of rooms) await join(m, room);
    // Each relay learns each room's epoch on its first message there.
    await Promise.all(members.slice(1, 3).map((m) => Promise.all(rooms.map((room) => publishAll(m, room, ['warm-up'])))));

    const perMember = 10;
    const before = await commandsProcessed(redis);
    await Promise.all(
      members.map((m, i) => Promise.all(rooms.map((room) => publishAll(m, room, Array.from({ length: perMember }, (_, n) => `m${i}-${n}`))))),
    );
    const commands = (await commandsProcessed(redis)) - before;
    const messages = members.length * rooms.length * perMember;
    // The release before this script ran 7 per message (EVALSHA, HGET, HINCRBY, XADD, EXPIRE, EXPIRE, PUBLISH).
    expect(commands / messages).toBeLessThanOrEqual(3);
    for (const m of members) {
      await waitForCondition(m, () => m.messages().length >= rooms.length * (2 + members.length * perMember), `every message (${m.messages().length})`);
      for (const room of rooms) expectConsecutive(roomMessages(m, room), 0, String(roomMessages(m, room)[0].epoch));
    }
  });

  it('continues a room whose history was started again under a newer epoch than the relay remembers', async () => {
    const redis = await redisServers.start();
    const [r1] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'newer' }));
    const publisher = await clients.connect(r1);
    const reader = await clients.connect(r1);
    await join(reader, 'r');
    const first = await publishAndReceive(publisher, reader, 'r', 'first');
    const remembered = String(first.epoch);
    // Another relay's view: the history was lost and started again, 5 messages in, with a later epoch.
    const newer = String(BigInt(remembered) + 1000n);
    await redis.cli('DEL', 'newer:history:{r}');
    for (let seq = 1; seq <= 5; seq++) {
      await redis.cli('XADD', 'newer:history:{r}', `${newer}-${seq}`, 'f', `{"type":"message","room":"r","data":"other-${seq}","from":"x"`);
    }
    const next = await publishAndReceive(publisher, reader, 'r', 'next');
    expect(next).toMatchObject({ seq: '6', epoch: newer });
    // The reader caught up on the restarted history first: told of the new epoch, then its five messages in order.
    const fresh = roomMessages(reader, 'r').filter((m) => m.epoch === newer);
    expect(fresh.map((m) => m.data)).toEqual(['other-1', 'other-2', 'other-3', 'other-4', 'other-5', 'next']);
    expect(streamPosition(await redis.cli('XINFO', 'STREAM', 'newer:history:{r}'))).toEqual({ epoch: newer, seq: '6' });
  });

  it('starts a new epoch when the relay remembers an epoch newer than the room has, and keeps no entry numbered by it', async () => {
    const redis = await redisServers.start();
    const [r1] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'older' }));
    const publisher = await clients.connect(r1);
    const reader = await clients.connect(r1);
    await join(reader, 'r');
    const remembered = String((await publishAndReceive(publisher, reader, 'r', 'first')).epoch);
    // The room's history now has an older epoch (a failover to a node whose clock was behind): numbering under the
    // remembered epoch would mix two epochs in one stream.
    await redis.cli('DEL', 'older:history:{r}');
    await redis.cli('XADD', 'older:history:{r}', '1000-3', 'f', '{"type":"message","room":"r","data":"old","from":"x"');
    const next = await publishAndReceive(publisher, reader, 'r', 'next');
    expect(next.seq).toBe('1');
    expect([remembered, '1000']).not.toContain(next.epoch);
    expect(Number(await redis.cli('XLEN', 'older:history:{r}'))).toBe(1);
    expect(streamPosition(await redis.cli('XINFO', 'STREAM', 'older:history:{r}'))).toEqual({ epoch: next.epoch, seq: '1' });
    // The reader was told that the room started again before the message of the new epoch.
    const resync = reader.frames.find((f) => f.type === 'resync' && f.room === 'r');
    expect(resync).toMatchObject({ reason: 'epoch', position: { epoch: next.epoch } });
  });

  it('starts a new epoch at seq 1 when the room the relay remembers expired, with the TTL set again', async () => {
    const redis = await redisServers.start();
    const [r1] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'expired', RELAY_HISTORY_TTL_SECONDS: '120' }));
    const publisher = await clients.connect(r1);
    const reader = await clients.connect(r1);
    await join(reader, 'r');
    const first = await publishAndReceive(publisher, reader, 'r', 'first');
    await redis.cli('DEL', 'expired:history:{r}');
    const next = await publishAndReceive(publisher, reader, 'r', 'next');
    expect(next.seq).toBe('1');
    expect(next.epoch).not.toBe(first.epoch);
    const ttl = Number(await redis.cli('TTL', 'expired:history:{r}'));
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
  });

  it('trims a room to RELAY_HISTORY_MAX_BYTES with the XADD it already sends, within the stated worst-case bound', async () => {
    const redis = await redisServers.start();
    const maxBytes = 4096;
    const size = 50;
    const env = { REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'bytes', RELAY_HISTORY_SIZE: String(size) };
    const [r1] = await relays.pair(trustedEnv({ ...env, RELAY_MAX_PAYLOAD_BYTES: '4096', RELAY_HISTORY_MAX_BYTES: String(maxBytes) }));
    const publisher = await clients.connect(r1);
    // Equal sizes: the budget as a count, floor(B / entry), and never more than B.
    for (let i = 0; i < 30; i++) expect(await publish(publisher, 'even', `${'e'.repeat(400)}${i}`.slice(-400))).toMatchObject({ type: 'ack' });
    const even = await streamBytes(redis, 'bytes:history:{even}');
    const entry = even.bytes / even.count;
    expect(even.count).toBe(Math.floor(maxBytes / entry));
    expect(even.bytes).toBeLessThanOrEqual(maxBytes);
    // Decreasing sizes keep older, larger entries: more than B, but never more than the bound docs/redis-backplane.md states.
    // The first message learns the room's epoch (the slow path); the cost is measured after it.
    expect(await publish(publisher, 'falling', 'first')).toMatchObject({ type: 'ack' });
    const before = await commandsProcessed(redis);
    const sizes = Array.from({ length: 40 }, (_, i) => Math.max(1, 3800 - i * 200));
    for (const n of sizes) expect(await publish(publisher, 'falling', 'x'.repeat(n))).toMatchObject({ type: 'ack' });
    // EVALSHA, XADD (which trims), PUBLISH per message; the INFO that reads the counter counts itself once.
    const perMessage = ((await commandsProcessed(redis)) - before - 1) / sizes.length;
    expect(perMessage).toBeLessThanOrEqual(3);
    const falling = await streamBytes(redis, 'bytes:history:{falling}');
    expect(falling.bytes).toBeGreaterThan(maxBytes);
    // The largest stored entry: the largest payload plus its envelope, at most RELAY_MAX_PAYLOAD_BYTES.
    expect(falling.bytes).toBeLessThanOrEqual(historyBytesBound(size, maxBytes, 4096));
    // The newest message always stays, even when it alone is over the budget.
    expect(await publish(publisher, 'falling', 'y'.repeat(3900))).toMatchObject({ type: 'ack' });
    expect((await streamBytes(redis, 'bytes:history:{falling}')).count).toBe(1);
  });
});
