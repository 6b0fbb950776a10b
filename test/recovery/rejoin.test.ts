/**
 * A join of a room the client is already in is idempotent: a member that keeps re-sending `join` while messages
 * flow loses and duplicates nothing (on main it lost about a fifth of them: the join state was replaced and frames
 * held during the history read were dropped as "covered"). A join with `since` while a member replays the gap and
 * the live stream continues after the ack's position.
 */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import type { TestClient } from '../helpers/ws-client';
import { WAIT_MS, expectConsecutive, join, publish, roomMessages, waitForCondition, type Position } from './recovery-helpers';

jest.setTimeout(120_000);

const MESSAGES = 300;

const redisServers = useRedis();
const relayFixture = useRelays();
const clients = useClients();

/** Publishes MESSAGES numbered messages one after another (each waits for its ack) and then a final marker. */
async function publishStream(publisher: TestClient, room: string): Promise<void> {
  for (let n = 0; n < MESSAGES; n++) {
    const reply = await publish(publisher, room, n);
    expect(reply).toMatchObject({ type: 'ack' });
  }
}

describe('rejoining a room you are in', () => {
  it.each([
    ['the same relay', 0],
    ['the other relay', 1],
  ])('loses and duplicates nothing while the member re-sends join (publisher on %s)', async (_where, publisherRelay) => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'rejoin' }));
    const member = await clients.connect(relays[0]);
    const publisher = await clients.connect(relays[publisherRelay]);
    const first = await join(member, 'r');
    expect(first).toMatchObject({ type: 'ack', position: { seq: '0' } });
    const epoch = (first.position as Position).epoch;

    let publishing = true;
    const rejoinAcks: Array<Record<string, unknown>> = [];
    const rejoining = (async () => {
      for (let i = 0; publishing && i < 10_000; i++) rejoinAcks.push(await join(member, 'r'));
    })();
    await publishStream(publisher, 'r');
    publishing = false;
    await rejoining;

    await waitForCondition(member, () => roomMessages(member, 'r').length >= MESSAGES, `${MESSAGES} messages`, WAIT_MS).catch(() => undefined);
    const got = roomMessages(member, 'r');
    expect(got.map((m) => m.data)).toEqual(Array.from({ length: MESSAGES }, (_, n) => n));
    expectConsecutive(got, 0, epoch);
    // Every re-join was acked with a position the member had reached: never ahead of what it was sent.
    expect(rejoinAcks.length).toBeGreaterThan(5);
    for (const ack of rejoinAcks) expect(ack).toMatchObject({ type: 'ack', position: { epoch } });
  });

  it('replays the gap after `since` to a member and continues the live stream after the ack', async () => {
    const redis = await redisServers.start();
    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'rejoin-since' }));
    const member = await clients.connect(relays[0]);
    const publisher = await clients.connect(relays[1]);
    const first = await join(member, 'r');
    const epoch = (first.position as Position).epoch;
    for (let n = 0; n < 20; n++) await publish(publisher, 'r', n);
    await waitForCondition(member, () => roomMessages(member, 'r').length >= 20, '20 messages');

    const live = (async () => {
      for (let n = 20; n < 60; n++) await publish(publisher, 'r', n);
    })();
    const before = member.frames.length;
    const ack = await join(member, 'r', { seq: '10', epoch });
    await live;
    expect(ack).toMatchObject({ type: 'ack', recovered: true, position: { epoch } });
    const acked = Number((ack.position as Position).seq);
    const ackAt = member.frames.indexOf(ack);
    // Replayed before the ack: the gap after seq 10 up to the acked position.
    const replay = member.frames.slice(before, ackAt).filter((f) => f.type === 'message');
    const replayed = replay.slice(replay.findIndex((f) => f.seq === '11'));
    expectConsecutive(replayed, 10, epoch);
    expect(Number(replayed[replayed.length - 1].seq)).toBe(acked);
    // After the ack: every later message exactly once, in order.
    await waitForCondition(member, () => roomMessages(member, 'r').some((m) => m.data === 59), 'the last message');
    const after = member.frames.slice(ackAt + 1).filter((f) => f.type === 'message');
    expectConsecutive(after, acked, epoch);
    expect(after[after.length - 1].data).toBe(59);
  });
});
