/**
 * One client flooding fresh rooms with maximum-size frames for 8 s: the room budget (RELAY_ROOM_CREATE_BUDGET) and
 * the per-room byte budget (RELAY_HISTORY_MAX_BYTES) bound what it stores, as docs/redis-backplane.md "Sizing"
 * states, and another room's history stays whole, on Redis (two relays) and on the in-memory backplane.
 */
import { expect } from '@jest/globals';
import { historyBytesBound } from '../../service/backplane/history';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { MB, metricValue, trustedEnv } from '../helpers/load';
import type { RedisServer } from '../helpers/redis-server';
import type { RelayProcess } from '../helpers/relay-process';
import type { TestClient } from '../helpers/ws-client';
import { join, publish, roomMessages, waitForCondition, type Position } from './recovery-helpers';

jest.setTimeout(120_000);

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

const FLOOD_MS = 8_000;
const BUDGET = 20;
const MAX_PAYLOAD = 65_536;
const SIZE = 1000;
const MAX_BYTES = 65_536;
/** What the docs allow Redis beyond the rooms' bounds: client buffers and allocator slack. */
const REDIS_OVERHEAD = 4 * MB;
/** The settings under test; the rate limit is out of the way so that the flood is as fast as the relay allows. */
const env = trustedEnv({
  RELAY_ROOM_CREATE_BUDGET: String(BUDGET),
  RELAY_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD),
  RELAY_HISTORY_SIZE: String(SIZE),
  RELAY_HISTORY_MAX_BYTES: String(MAX_BYTES),
});

/** Publishes maximum-size frames to a fresh room each, 4 in flight, for FLOOD_MS; counts acks and refusals. */
async function flood(client: TestClient): Promise<{ acked: number; refused: number }> {
  const data = 'x'.repeat(MAX_PAYLOAD - 300);
  const deadline = Date.now() + FLOOD_MS;
  const counts = { acked: 0, refused: 0 };
  let next = 0;
  const worker = async () => {
    while (Date.now() < deadline && next < 1_000_000) {
      const reply = await publish(client, `fresh-${next++}`, data);
      if (reply.type === 'ack') counts.acked++;
      else if (reply.code === 'room_budget') counts.refused++;
      else throw new Error(`unexpected reply to the flood: ${JSON.stringify(reply)}`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return counts;
}

/** A member of `victim` that leaves after 20 messages, misses 20 more during the flood, and rejoins with since. */
async function victimRoom(member: RelayProcess, publisherRelay: RelayProcess) {
  const reader = await clients.connect(member);
  const publisher = await clients.connect(publisherRelay);
  await join(reader, 'victim');
  for (let n = 0; n < 20; n++) expect(await publish(publisher, 'victim', `before-${n}`)).toMatchObject({ type: 'ack' });
  await waitForCondition(reader, () => roomMessages(reader, 'victim').length >= 20, '20 messages');
  const last = roomMessages(reader, 'victim')[19];
  const since: Position = { seq: String(last.seq), epoch: String(last.epoch) };
  await reader.close();
  for (let n = 0; n < 20; n++) expect(await publish(publisher, 'victim', `missed-${n}`)).toMatchObject({ type: 'ack' });
  return {
    async expectIntact() {
      const back = await clients.connect(member);
      expect(await join(back, 'victim', since)).toMatchObject({ type: 'ack', recovered: true });
      await waitForCondition(back, () => roomMessages(back, 'victim').length >= 20, 'the 20 missed messages');
      expect(roomMessages(back, 'victim').map((m) => m.data)).toEqual(Array.from({ length: 20 }, (_, n) => `missed-${n}`));
    },
  };
}

async function usedMemory(redis: RedisServer): Promise<number> {
  const info = await redis.cli('INFO', 'memory');
  const match = /used_memory:(\d+)/.exec(info);
  if (match === null) throw new Error(`no used_memory in INFO memory: ${info.slice(0, 200)}`);
  return Number(match[1]);
}

describe('a client flooding fresh rooms', () => {
  it('grows Redis by at most the room budget times the per-room bound, and another room keeps its history', async () => {
    const redis = await redisServers.start();
    const [r1, r2] = await relays.pair({ ...env, REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'flood' });
    const victim = await victimRoom(r2, r1);
    const flooder = await clients.connect(r1);
    const before = await usedMemory(redis);

    const { acked, refused } = await flood(flooder);

    expect(acked).toBe(BUDGET);
    expect(refused).toBeGreaterThan(0);
    const keys = Number(await redis.cli('EVAL', "return #redis.call('KEYS', ARGV[1])", '0', 'flood:history:{fresh-*'));
    expect(keys).toBe(BUDGET);
    // docs/redis-backplane.md "Sizing": per room 100 + the entry bound + 50 per entry; plus the stated overhead.
    const perRoom = 100 + historyBytesBound(SIZE, MAX_BYTES, MAX_PAYLOAD) + 50 * SIZE;
    expect((await usedMemory(redis)) - before).toBeLessThanOrEqual(BUDGET * perRoom + REDIS_OVERHEAD);
    await victim.expectIntact();
  });

  it('keeps the in-memory backplane under RELAY_HISTORY_MEMORY_MAX_BYTES, and another room keeps its history', async () => {
    const cap = 16 * MB;
    const relay = await relays.start({ ...env, RELAY_HISTORY_MEMORY_MAX_BYTES: String(cap) });
    const victim = await victimRoom(relay, relay);
    const flooder = await clients.connect(relay);

    const { acked, refused } = await flood(flooder);

    expect(acked).toBe(BUDGET);
    expect(refused).toBeGreaterThan(0);
    const bytes = await metricValue(relay.metricsUrl, 'relay_history_bytes');
    expect(bytes).toBeGreaterThan(BUDGET * (MAX_PAYLOAD - 300));
    expect(bytes).toBeLessThanOrEqual(cap);
    // The cap is large enough for the budgeted rooms, so nothing was evicted: the other room replays in full.
    await victim.expectIntact();
  });
});
