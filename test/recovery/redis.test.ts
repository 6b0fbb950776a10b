/** Recovery across relay processes sharing one real redis-server. */
import { expect } from '@jest/globals';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import { waitUntil, type RedisServer } from '../helpers/redis-server';
import {
  RecoveringClient,
  WAIT_MS,
  expectConsecutive,
  join,
  lastPosition,
  publish,
  publishAll,
  roomMessages,
  waitForCondition,
} from './recovery-helpers';

jest.setTimeout(120_000);

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

function env(redis: RedisServer, prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: prefix, ...extra });
}

describe('recovery through Redis', () => {
  it('replays the 500 messages a client missed on another instance, in order, then continues live with no duplicate', async () => {
    const redis = await redisServers.start();
    const [r1, r2] = await relays.pair(env(redis, 'rec500'));
    const publisher = await clients.connect(r2);
    const reader = await clients.connect(r1);
    await join(reader, 'room');
    await publishAll(publisher, 'room', ['before-0', 'before-1']);
    await reader.waitForMessages(2);
    const since = lastPosition(reader, 'room');
    expect(since.seq).toBe('2');
    await reader.close();

    const missed = Array.from({ length: 500 }, (_, i) => `missed-${i}`);
    await publishAll(publisher, 'room', missed);

    const back = await clients.connect(r2);
    const ack = await join(back, 'room', since);
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: true, replayed: 500, position: { seq: '502', epoch: since.epoch } });
    expect(back.frames.slice(0, back.frames.indexOf(ack)).filter((f) => f.type === 'message')).toHaveLength(500);
    // Live messages from both instances after the replay.
    const other = await clients.connect(r1);
    await publishAll(publisher, 'room', ['live-r2']);
    await publishAll(other, 'room', ['live-r1']);
    await waitForCondition(back, () => roomMessages(back, 'room').length >= 502, '502 messages');
    const frames = roomMessages(back, 'room');
    expect(frames.map((f) => f.data)).toEqual([...missed, 'live-r2', 'live-r1']);
    expectConsecutive(frames, 2, since.epoch);
    // History lives in one stream per room with the configured TTL.
    expect(Number(await redis.cli('XLEN', 'rec500:history:{room}'))).toBe(504);
    const ttl = Number(await redis.cli('TTL', 'rec500:history:{room}'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(300);
  });

  it('lets the clients of a drained instance recover every message published during the drain from the survivor', async () => {
    const redis = await redisServers.start();
    const [drained, survivor] = await relays.pair(env(redis, 'drain', { RELAY_DRAIN_WINDOW_MS: '1000' }));
    const rooms = ['d0', 'd1'];
    const readers = Array.from({ length: 6 }, () => clients.track(new RecoveringClient(rooms)));
    for (const r of readers) await r.connect(drained.wsUrl);
    const publisher = await clients.connect(survivor);

    // Publishers keep going, one acked message at a time per room, until told to stop (bounded in count).
    const published = new Map<string, string[]>(rooms.map((room) => [room, []]));
    let running = true;
    const pump = Promise.all(
      rooms.map(async (room) => {
        for (let i = 0; running && i < 5000; i++) {
          const reply = await publish(publisher, room, `${room}-${i}`);
          expect(reply).toMatchObject({ type: 'ack' });
          published.get(room)!.push(`${room}-${i}`);
        }
      }),
    );
    try {
      await waitForCondition(publisher, () => published.get('d1')!.length >= 20, 'publishing to start');
      drained.signal('SIGTERM');
      // Each reader reconnects to the survivor with since as soon as the drain closes it (1001).
      await Promise.all(
        readers.map(async (r) => {
          expect((await r.current.waitClose(WAIT_MS)).code).toBe(1001);
          const acks = await r.connect(survivor.wsUrl);
          for (const ack of acks) expect(ack).toMatchObject({ recovered: true });
        }),
      );
      const mark = published.get('d0')!.length;
      await waitForCondition(publisher, () => published.get('d0')!.length >= mark + 20, '20 more messages after the reconnects');
    } finally {
      running = false;
      await pump;
    }
    expect(await drained.waitExit()).toEqual({ code: 0, signal: null });
    for (const r of readers) {
      for (const room of rooms) {
        const want = published.get(room)!;
        const got = (): unknown[] => r.received.filter((m) => m.room === room).map((m) => m.data);
        await r.waitUntil(() => got().length >= want.length, `all ${want.length} messages of ${room}`).catch((err: Error) => {
          const missing = want.filter((d) => !got().includes(d));
          throw new Error(`${err.message}; got ${got().length}, missing ${JSON.stringify(missing.slice(0, 20))}; acks ${JSON.stringify(r.acks)}`);
        });
        const frames = r.received.filter((m) => m.room === room);
        expect(frames.map((f) => f.data)).toEqual(want);
        expectConsecutive(frames, 0, String(frames[0].epoch));
      }
    }
  });

  it('answers recovered:false with a new epoch after Redis restarted empty', async () => {
    const redis = await redisServers.start();
    const [r1] = await relays.pair(env(redis, 'epoch'));
    const c = await clients.connect(r1);
    await join(c, 'room');
    await publishAll(c, 'room', ['a', 'b']);
    await c.waitForMessages(2);
    const since = lastPosition(c, 'room');
    await c.close();

    await redis.restart();
    await r1.waitHealthy(20_000);
    const back = await clients.connect(r1);
    const ack = await join(back, 'room', since);
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: false, reason: 'epoch', position: { seq: '0', epoch: expect.any(String) } });
    expect((ack.position as { epoch: string }).epoch).not.toBe(since.epoch);
    await publishAll(back, 'room', ['after']);
    expect(await back.waitForMessages(1)).toEqual([
      { type: 'message', room: 'room', data: 'after', from: back.welcome.connectionId, seq: '1', epoch: (ack.position as { epoch: string }).epoch },
    ]);
  });

  it('answers recovered:false when the gap is older than the history or over the replay cap, and replays nothing', async () => {
    const redis = await redisServers.start();
    const small = await relays.start(env(redis, 'small', { RELAY_HISTORY_SIZE: '10', RELAY_HISTORY_REPLAY_MAX: '15' }));
    const capped = await relays.start(env(redis, 'capped', { RELAY_HISTORY_SIZE: '100', RELAY_HISTORY_REPLAY_MAX: '8' }));
    await Promise.all([small.waitHealthy(20_000), capped.waitHealthy(20_000)]);
    for (const [relay, refused, accepted, replayed, reason] of [
      [small, '9', '10', 10, 'trimmed'],
      [capped, '11', '12', 8, 'cap'],
    ] as const) {
      const c = await clients.connect(relay);
      const first = await join(c, 'room');
      const epoch = (first.position as { epoch: string }).epoch;
      await publishAll(c, 'room', Array.from({ length: 20 }, (_, i) => i));
      await c.waitForMessages(20);
      const probe = await clients.connect(relay);
      const no = await join(probe, 'room', { seq: refused, epoch });
      expect(no).toEqual({ type: 'ack', id: no.id, recovered: false, reason, position: { seq: '20', epoch } });
      expect(probe.messages()).toEqual([]);
      const future = await join(probe, 'room', { seq: '21', epoch });
      expect(future).toEqual({ type: 'ack', id: future.id, recovered: false, reason: 'future', position: { seq: '20', epoch } });
      const yes = await join(probe, 'room', { seq: accepted, epoch });
      expect(yes).toEqual({ type: 'ack', id: yes.id, recovered: true, replayed, position: { seq: '20', epoch } });
      expectConsecutive(probe.messages(), 20 - replayed, epoch);
    }
    // Exact MAXLEN: the stream holds the configured size, no more.
    expect(Number(await redis.cli('XLEN', 'small:history:{room}'))).toBe(10);
  });

  it('answers a join with since recovered:false and no position while Redis is down, and refuses publishes', async () => {
    const redis = await redisServers.start();
    const [r1] = await relays.pair(env(redis, 'down'));
    const c = await clients.connect(r1);
    const first = await join(c, 'room');
    await redis.kill();
    await waitUntil(async () => (await r1.health()).status === 503, 20_000, 'the relay to report 503');
    const ack = await join(c, 'other', first.position as { seq: string; epoch: string });
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: false, reason: 'unavailable' });
    expect(await publish(c, 'room', 'lost')).toEqual({
      type: 'error',
      id: expect.any(String),
      code: 'backplane_unavailable',
      message: 'the redis backplane is down; the message was not delivered, retry shortly',
    });
  });

  // Presence, which keeps its own keys per joined room, is switched off so that any key left in Redis is history's.
  it('with RELAY_HISTORY_SIZE=0 publishes without seq/epoch, keeps no keys, and never recovers', async () => {
    const redis = await redisServers.start();
    const [r1, r2] = await relays.pair(env(redis, 'off', { RELAY_HISTORY_SIZE: '0', RELAY_PRESENCE: 'off' }));
    const a = await clients.connect(r1);
    const b = await clients.connect(r2);
    expect(await join(a, 'room')).toEqual({ type: 'ack', id: expect.any(String) });
    await join(b, 'room');
    await publishAll(a, 'room', ['x']);
    const expected = { type: 'message', room: 'room', data: 'x', from: a.welcome.connectionId };
    expect(await b.waitForMessages(1)).toEqual([expected]);
    expect(await a.waitForMessages(1)).toEqual([expected]);
    const ack = await join(b, 'room', { seq: '1', epoch: 'e' });
    expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: false, reason: 'disabled' });
    expect((await redis.cli('KEYS', 'off:*')).trim()).toBe('');
  });
});
