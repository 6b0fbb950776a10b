/** 20 publishers and 20 clients that keep dropping and rejoining with `since`, on two relays of one Redis. */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import { RecoveringClient, expectConsecutive, join, publish, type Position } from './recovery-helpers';

jest.setTimeout(180_000);

const ROOMS = ['c0', 'c1', 'c2', 'c3'];
/**
 * Publishers run until every reader finished its cycles (and at least MIN_PER_PUBLISHER each), bounded by
 * MAX_PER_PUBLISHER. A reconnect's gap is a few hundred messages at most, within the default history of 1000.
 */
const MIN_PER_PUBLISHER = 20;
const MAX_PER_PUBLISHER = 1000;
const CYCLES = 3;

const redisServers = useRedis();
const relayFixture = useRelays();
const clients = useClients();

describe('recovery under concurrency', () => {
  it('gives every recovering client a gap-free, duplicate-free sequence per room while 20 publishers keep publishing', async () => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'conc' }));

    const readers = Array.from({ length: 20 }, (_, i) => clients.track(new RecoveringClient([ROOMS[i % 4], ROOMS[(i + 1) % 4]])));
    const firstPositions = new Map<RecoveringClient, Map<string, Position>>();
    await Promise.all(
      readers.map(async (r, i) => {
        const acks = await r.connect(relays[i % 2].wsUrl);
        firstPositions.set(r, new Map(acks.map((ack, k) => [[ROOMS[i % 4], ROOMS[(i + 1) % 4]][k], ack.position as Position])));
      }),
    );
    const publishers = await Promise.all(Array.from({ length: 20 }, (_, i) => clients.connect(relays[i % 2])));

    let cyclesDone = false;
    let sent = 0;
    const refusals: unknown[] = [];
    const publishing = Promise.all(
      publishers.map(async (p, i) => {
        for (let n = 0; n < MAX_PER_PUBLISHER && !(cyclesDone && n >= MIN_PER_PUBLISHER); n++) {
          const reply = await publish(p, ROOMS[(i + n) % 4], `p${i}-${n}`);
          if (reply.type !== 'ack') refusals.push(reply);
          sent++;
        }
      }),
    );
    const cycling = Promise.all(
      readers.map(async (r, i) => {
        for (let cycle = 1; cycle <= CYCLES; cycle++) {
          // Let a few messages arrive first, so each reconnect resumes from the middle of the stream.
          const before = r.received.length;
          await r.waitUntil(() => r.received.length >= before + 3, 'a few messages before dropping');
          await r.close();
          const acks = await r.connect(relays[(i + cycle) % 2].wsUrl);
          for (const ack of acks) expect(ack).toMatchObject({ type: 'ack', recovered: true });
        }
      }),
    );
    try {
      await cycling;
    } finally {
      cyclesDone = true;
      await publishing;
    }
    expect(refusals).toEqual([]);
    // The rejoins really had gaps to fill while publishing went on.
    const replayed = readers.flatMap((r) => r.acks).reduce((sum, ack) => sum + (typeof ack.replayed === 'number' ? ack.replayed : 0), 0);
    expect(replayed).toBeGreaterThan(0);

    // The final position of each room, from a fresh join.
    const probe = await clients.connect(relays[0]);
    const finals = new Map<string, Position>();
    for (const room of ROOMS) finals.set(room, (await join(probe, room)).position as Position);
    expect([...finals.values()].reduce((sum, p) => sum + Number(p.seq), 0)).toBe(sent);

    for (const [i, r] of readers.entries()) {
      for (const room of [ROOMS[i % 4], ROOMS[(i + 1) % 4]]) {
        const final = finals.get(room)!;
        await r.waitUntil(() => r.position(room)?.seq === final.seq, `reader ${i} to reach ${room}#${final.seq}`);
        const first = firstPositions.get(r)!.get(room)!;
        expect(first.epoch).toBe(final.epoch);
        expectConsecutive(
          r.received.filter((m) => m.room === room),
          Number(first.seq),
          final.epoch,
        );
      }
    }
  });
});
