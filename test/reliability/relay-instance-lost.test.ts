/**
 * One of two relays is killed with SIGKILL (an instance lost): its clients see the abnormal close (1006),
 * reconnect to the survivor and receive again; the survivor's clients never notice.
 */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { joinAll, trustedEnv, watchCloses } from '../helpers/load';

jest.setTimeout(90_000);

const PER_RELAY = 20;
const ROOM = 'lost';
const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

describe('relay instance lost', () => {
  it('moves the lost instance’s clients to the survivor while the survivor’s clients keep receiving', async () => {
    const redis = await redisServers.start();
    const [doomed, survivor] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'lost' }));
    const onDoomed = await clients.connectMany(doomed, PER_RELAY);
    const onSurvivor = await clients.connectMany(survivor, PER_RELAY);
    await joinAll([...onDoomed, ...onSurvivor], ROOM);
    const survivorCloses = watchCloses(onSurvivor);

    // A steady stream from a survivor client: 50 msg/s, bounded to 2,000 frames.
    const publisher = onSurvivor[0];
    let seq = 0;
    const timer = setInterval(() => {
      if (seq < 2_000) publisher.send({ type: 'publish', room: ROOM, data: { seq: seq++ } });
    }, 20);
    try {
      await onDoomed[0].waitFor((f) => f.type === 'message', 10_000);

      doomed.signal('SIGKILL');
      expect(await doomed.waitExit(10_000)).toEqual({ code: null, signal: 'SIGKILL' });
      const closes = await Promise.all(onDoomed.map((c) => c.waitClose(10_000)));
      expect(new Set(closes.map((c) => c.code))).toEqual(new Set([1006]));

      // What a client library does on 1006: reconnect (the load balancer sends it to the survivor) and rejoin.
      const moved = await clients.connectMany(survivor, PER_RELAY);
      for (const c of moved) expect(c.welcome.instanceId).toBe(onSurvivor[0].welcome.instanceId);
      await joinAll(moved, ROOM);
      const from = seq;
      await Promise.all(moved.map((c) => c.waitFor((f) => f.type === 'message' && (f.data as { seq: number }).seq >= from, 10_000)));
      // And what they publish reaches the survivor's original clients.
      moved[0].send({ type: 'publish', room: ROOM, data: 'back', id: 'back' });
      await Promise.all(onSurvivor.map((c) => c.waitFor((f) => f.data === 'back', 10_000)));
    } finally {
      clearInterval(timer);
    }
    // A last marker after the stream stopped proves every earlier frame had its chance to arrive.
    publisher.send({ type: 'publish', room: ROOM, data: 'end' });
    await Promise.all(onSurvivor.map((c) => c.waitFor((f) => f.data === 'end', 10_000)));
    const expected = Array.from({ length: seq }, (_, i) => i);
    for (const c of onSurvivor) {
      const got = c.messages().filter((m) => m.from === publisher.welcome.connectionId && typeof m.data === 'object');
      expect(got.map((m) => (m.data as { seq: number }).seq)).toEqual(expected);
    }
    expect(survivorCloses.closes).toEqual([]);
    expect(survivor.proc.exitCode).toBeNull();
    expect((await survivor.health()).body).toMatchObject({ status: 'ok', connections: PER_RELAY * 2 });
  });
});
