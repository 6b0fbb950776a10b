/**
 * After a backplane reconnect each relay catches every subscribed room up from the history. Redis is killed with
 * SIGKILL and restarted 1 s later while publishers on both relays keep publishing: every reader ends with every
 * message of the new epoch, in order, and a `resync` frame for its room (the epoch changed). On main, the relay that
 * resubscribed later silently missed the first messages of the new epoch and nobody was told.
 */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { injectedDelay, trustedEnv } from '../helpers/load';
import type { TestClient } from '../helpers/ws-client';
import { WAIT_MS, expectConsecutive, streamPosition, join, publish, roomMessages, waitForCondition, type Position } from './recovery-helpers';

jest.setTimeout(180_000);

const ROOMS = ['k0', 'k1', 'k2', 'k3'];
/** Acked publishes each publisher makes after Redis is back before it stops. */
const AFTER_RESTART = 40;
const MAX_PUBLISHES = 5_000;

const redisServers = useRedis();
const relayFixture = useRelays();
const clients = useClients();

describe('redis restart', () => {
  it('gives every reader every message of the new epoch and a resync, on both relays', async () => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'restart' }));
    const readers: Array<{ client: TestClient; room: string; epoch: string }> = [];
    for (const relay of relays) {
      for (const room of ROOMS) {
        const client = await clients.connect(relay);
        const ack = await join(client, room);
        readers.push({ client, room, epoch: (ack.position as Position).epoch });
      }
    }
    const publishers = await Promise.all(relays.map((relay) => clients.connect(relay)));

    let restarted = false;
    const ackedAfter = [0, 0];
    const publishing = Promise.all(
      publishers.map(async (p, i) => {
        for (let n = 0; n < MAX_PUBLISHES && ackedAfter[i] < AFTER_RESTART; n++) {
          const wasRestarted = restarted;
          const reply = await publish(p, ROOMS[n % ROOMS.length], `p${i}-${n}`);
          if (reply.type === 'ack' && wasRestarted) ackedAfter[i]++;
          // While Redis is away publishes are refused; the publisher waits for the relay to be healthy again.
          if (reply.type === 'error') await relays[i].waitHealthy(WAIT_MS);
        }
      }),
    );
    // Every reader has messages of the first epoch before Redis goes away.
    for (const r of readers) await waitForCondition(r.client, () => roomMessages(r.client, r.room).length >= 2, 'messages before the restart');
    await redis.kill('SIGKILL');
    await injectedDelay(1000);
    await redis.restart();
    restarted = true;
    await publishing;

    for (const r of readers) {
      // The room's position in Redis now: the new epoch and its last seq.
      const position = streamPosition(await redis.cli('XINFO', 'STREAM', `restart:history:{${r.room}}`));
      expect(position).not.toBeNull();
      const { epoch, seq } = position!;
      expect(epoch).not.toBe(r.epoch);
      const last = Number(seq);
      expect(last).toBeGreaterThan(0);
      await waitForCondition(
        r.client,
        () => roomMessages(r.client, r.room).some((m) => m.epoch === epoch && Number(m.seq) === last),
        `the last message of room ${r.room}`,
      ).catch(() => undefined);
      const fresh = roomMessages(r.client, r.room).filter((m) => m.epoch === epoch);
      expectConsecutive(fresh, 0, epoch);
      expect(fresh).toHaveLength(last);
      const resync = r.client.frames.find((f) => f.type === 'resync' && f.room === r.room && (f.position as Position).epoch === epoch);
      expect(resync).toMatchObject({ type: 'resync', room: r.room, reason: 'epoch' });
      // The notice comes before the first message of the new epoch.
      expect(r.client.frames.indexOf(resync!)).toBeLessThan(r.client.frames.indexOf(fresh[0]));
    }
  });
});
