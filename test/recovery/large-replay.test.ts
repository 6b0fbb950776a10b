/**
 * A replay larger than the send-buffer cap streams with backpressure: on main it was written in one synchronous
 * burst and a reader that kept up was cut off with 1013 after a partial replay, never seeing the ack.
 */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { MB, closeRaw, openRaw, trustedEnv } from '../helpers/load';
import type { RedisServer } from '../helpers/redis-server';
import { expectConsecutive, join, publish, roomMessages, type Position } from './recovery-helpers';

jest.setTimeout(180_000);

/** 300 messages of ~60 KB: an 18 MB gap, within the default replay cap of 1000 messages. */
const COUNT = 300;
const PAYLOAD = 'y'.repeat(60_000);

/** A room history budget that holds the whole 18 MB gap (the default, 1 MiB, would trim it to its last ~17 messages). */
const HISTORY_BYTES = { RELAY_HISTORY_MAX_BYTES: String(32 * MB) };

const redisServers = useRedis();
const relayFixture = useRelays();
const clients = useClients();

/** Bytes Redis has sent to its clients so far. */
async function redisEgress(redis: RedisServer): Promise<number> {
  const stats = await redis.cli('INFO', 'stats');
  const match = /total_net_output_bytes:(\d+)/.exec(stats);
  if (match === null) throw new Error(`no total_net_output_bytes in INFO stats: ${stats.slice(0, 200)}`);
  return Number(match[1]);
}

describe('large replays', () => {
  it('replays 18 MB of history to a reader that keeps up, completely and then acks', async () => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'big', ...HISTORY_BYTES }));
    const publisher = await clients.connect(relays[1]);
    const first = await join(publisher, 'big');
    const since = first.position as Position;
    for (let n = 0; n < COUNT; n++) expect(await publish(publisher, 'big', `${n}:${PAYLOAD}`)).toMatchObject({ type: 'ack' });

    for (let attempt = 0; attempt < 3; attempt++) {
      const reader = await clients.connect(relays[0]);
      const ack = await join(reader, 'big', since);
      expect(ack).toMatchObject({ type: 'ack', recovered: true, replayed: COUNT, position: { seq: String(COUNT), epoch: since.epoch } });
      expectConsecutive(roomMessages(reader, 'big'), 0, since.epoch);
      await reader.close();
    }
  });

  it('answers joins over the replay budget recovered:false with a reason, reading no more than the budget out of Redis', async () => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'budget', RELAY_REPLAY_BUDGET_BYTES: String(MB), ...HISTORY_BYTES }));
    const publisher = await clients.connect(relays[1]);
    const since = (await join(publisher, 'big')).position as Position;
    for (let n = 0; n < COUNT; n++) expect(await publish(publisher, 'big', `${n}:${PAYLOAD}`)).toMatchObject({ type: 'ack' });

    // The amplification attack: 16 joins with `since` from clients that never read.
    const before = await redisEgress(redis);
    const sockets = await Promise.all(Array.from({ length: 16 }, () => openRaw(relays[0].wsUrl, { perMessageDeflate: false })));
    for (const ws of sockets) clients.track({ close: () => closeRaw(ws) });
    const reader = await clients.connect(relays[0]);
    for (const ws of sockets) {
      ws.send(JSON.stringify({ type: 'join', room: 'big', id: 'j', since }));
      ws.pause();
    }
    // A client that reads is answered the same way, and nothing of the gap reaches it.
    const ack = await join(reader, 'big', since);
    expect(ack).toMatchObject({ type: 'ack', recovered: false, reason: 'budget', position: { seq: String(COUNT), epoch: since.epoch } });
    expect(roomMessages(reader, 'big')).toEqual([]);
    // Within the budget, a connection recovers: the last 10 messages (600 KB).
    const fresh = await clients.connect(relays[0]);
    const small = await join(fresh, 'big', { seq: String(COUNT - 10), epoch: since.epoch });
    expect(small).toMatchObject({ type: 'ack', recovered: true, replayed: 10 });
    expect(roomMessages(fresh, 'big')).toHaveLength(10);
    const egress = (await redisEgress(redis)) - before;
    // Each join over budget stops reading once past it: at most the budget plus one page (~1 MB) each, 17 joins;
    // main read the 18 MB gap for every join (~300 MB).
    expect(egress).toBeLessThan(17 * 2 * MB + 4 * MB);
  });
});
