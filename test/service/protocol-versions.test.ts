/**
 * Protocol 2 (`/ws?protocol=2`): a publish without an `id` is not acked; everything else is as in protocol 1, and a
 * client that does not opt in keeps protocol 1 exactly. Real relays over a real Redis, with and without history.
 */
import { expect } from '@jest/globals';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import { rawUpgrade, type TestClient } from '../helpers/ws-client';

jest.setTimeout(60_000);

const redisServers = useRedis({ per: 'block' });
const relays = useRelays({ per: 'block' });
const clients = useClients();

let barriers = 0;

/**
 * Publishes without an id, then publishes with one to the same room: the relay answers a connection's publishes in
 * the order it sent them, so every frame it sent for the first arrives before the second's ack. Returns the frames
 * between, the second's ack excluded.
 */
async function publishWithoutId(client: TestClient, room: string, data: unknown) {
  const from = client.frames.length;
  client.send({ type: 'publish', room, data });
  const id = `barrier-${++barriers}`;
  const barrier = await client.request({ type: 'publish', room: 'barrier', data: id, id });
  expect(barrier).toEqual({ type: 'ack', id });
  return client.frames.slice(from).filter((f) => f.id !== id);
}

describe.each([
  ['history on', {}],
  ['history off', { RELAY_HISTORY_SIZE: '0' }],
])('protocol versions (%s)', (_name, extra: Record<string, string>) => {
  let urls: [string, string];

  beforeAll(async () => {
    const redis = await redisServers.start();
    const pair = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: `pv${Object.keys(extra).length}`, ...extra }));
    urls = [pair[0].wsUrl, pair[1].wsUrl];
  });

  it('protocol 1 (no opt-in) acks every publish, with or without an id', async () => {
    const publisher = await clients.connect(urls[0]);
    expect(publisher.welcome).toMatchObject({ type: 'welcome', protocol: 1 });
    await publisher.request({ type: 'join', room: 'p1', id: 'j' });
    const answered = await publishWithoutId(publisher, 'p1', 'no-id');
    expect(answered.filter((f) => f.type === 'ack')).toEqual([{ type: 'ack' }]);
    expect(await publisher.request({ type: 'publish', room: 'p1', data: 'with-id', id: 'x1' })).toEqual({ type: 'ack', id: 'x1' });
    // ?protocol=1 is the same as no opt-in.
    const explicit = await clients.connect(`${urls[1]}?protocol=1`);
    expect(explicit.welcome).toMatchObject({ protocol: 1 });
    expect((await publishWithoutId(explicit, 'p1', 'no-id-explicit')).filter((f) => f.type === 'ack')).toEqual([{ type: 'ack' }]);
  });

  it('protocol 2 sends no ack for a publish without an id, still acks one with an id, and delivers both everywhere', async () => {
    const publisher = await clients.connect(`${urls[0]}?protocol=2`);
    expect(publisher.welcome).toEqual({ type: 'welcome', connectionId: expect.any(String), instanceId: expect.any(String), protocol: 2 });
    const member = await clients.connect(urls[1]);
    await member.request({ type: 'join', room: 'p2', id: 'j' });
    await publisher.request({ type: 'join', room: 'p2', id: 'j' });

    const answered = await publishWithoutId(publisher, 'p2', 'quiet');
    expect(answered.filter((f) => f.type === 'ack' || f.type === 'error')).toEqual([]);
    expect(await publisher.request({ type: 'publish', room: 'p2', data: 'loud', id: 'x2' })).toEqual({ type: 'ack', id: 'x2' });
    for (const c of [member, publisher]) {
      await c.waitFor((f) => f.type === 'message' && f.data === 'loud');
      expect(c.messages().filter((m) => m.room === 'p2').map((m) => m.data)).toEqual(['quiet', 'loud']);
    }
  });

  it('protocol 2 still answers a refused publish without an id with an error', async () => {
    const publisher = await clients.connect(`${urls[1]}?protocol=2`);
    const answered = await publishWithoutId(publisher, 'bad room!', 'x');
    expect(answered).toEqual([expect.objectContaining({ type: 'error', code: 'invalid_room' })]);
  });
});

describe('protocol opt-in errors', () => {
  it('refuses an unknown protocol at the upgrade with a 400 that says which protocols exist', async () => {
    const redis = await redisServers.start();
    const [relay] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_CHANNEL_PREFIX: 'pvbad' }));
    for (const value of ['3', 'two', '']) {
      const refused = await rawUpgrade(`${relay.wsUrl}?protocol=${value}`);
      expect(refused.status).toBe(400);
      const body = JSON.parse(refused.body) as { error: string; message: string };
      expect(body.error).toBe('bad_protocol');
      expect(body.message).toContain('/ws?protocol=2');
      expect(body.message).toContain(JSON.stringify(value));
    }
  });
});
