/** relay-client.js (Node, with ws) resuming rooms through a relay switch: from the join ack's position, and resync. */
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { RelayClient, type RelayMessage } from '../../service/public/relay-client';
import { nextEvent as nextEventWithin } from '../helpers/client-events';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import type { RelayProcess } from '../helpers/relay-process';
import type { RedisServer } from '../helpers/redis-server';
import type { TestClient } from '../helpers/ws-client';
import { WAIT_MS, publishAll } from './recovery-helpers';

const nextEvent: typeof nextEventWithin = (c, event, pred, timeoutMs = WAIT_MS) => nextEventWithin(c, event, pred, timeoutMs);

jest.setTimeout(120_000);

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

async function setup(redis: RedisServer): Promise<{ r1: RelayProcess; r2: RelayProcess; client: RelayClient; got: RelayMessage[]; publisher: TestClient }> {
  const [r1, r2] = await relays.pair(trustedEnv({ REDIS_URL: redis.url, RELAY_DRAIN_WINDOW_MS: '100' }));
  const client = clients.track(new RelayClient({ urls: [r1.wsUrl, r2.wsUrl], WebSocket, backoff: { initialMs: 50, maxMs: 400 } }));
  const got: RelayMessage[] = [];
  client.on('message', (m) => got.push(m));
  await client.connect();
  const publisher = await clients.connect(r2);
  return { r1, r2, client, got, publisher };
}

describe('relay-client.js with recovery', () => {
  it('resumes from the join ack position when it had received nothing before its relay went away', async () => {
    const redis = await redisServers.start();
    const { r1, r2, client, got, publisher } = await setup(redis);
    const ack = await client.join('quiet');
    expect(ack.position).toEqual({ seq: '0', epoch: expect.any(String) });

    const lost = nextEvent(client, 'close');
    r1.signal('SIGTERM');
    await lost;
    await publishAll(publisher, 'quiet', ['m0', 'm1', 'm2']);
    await nextEvent(client, 'open', (w) => w.url === r2.wsUrl);
    await publishAll(publisher, 'quiet', ['m3']);
    if (got.length < 4) await nextEvent(client, 'message', () => got.length >= 4);
    expect(got.map((m) => [m.data, m.seq])).toEqual([['m0', '1'], ['m1', '2'], ['m2', '3'], ['m3', '4']]);
  });

  it('emits resync and continues from the new position when its history was lost', async () => {
    const redis = await redisServers.start();
    const { r1, r2, client, got, publisher } = await setup(redis);
    await client.join('room');
    await publishAll(publisher, 'room', ['old']);
    if (got.length < 1) await nextEvent(client, 'message');
    const old = got[0];

    // The relay tells its members as soon as it is back on the restarted Redis (a resync frame), or the rejoin after
    // the relay goes away does (recovered:false): one resync event either way.
    const resync = nextEvent(client, 'resync');
    await redis.restart();
    await Promise.all([r1.waitHealthy(20_000), r2.waitHealthy(20_000)]);
    r1.signal('SIGTERM');
    const event = await resync;
    expect(event).toEqual({ room: 'room', since: { seq: '1', epoch: old.epoch }, position: { seq: '0', epoch: expect.any(String) }, reason: 'epoch' });
    expect(event.position?.epoch).not.toBe(old.epoch);
    await publishAll(publisher, 'room', ['new']);
    if (got.length < 2) await nextEvent(client, 'message', () => got.length >= 2);
    expect(got.map((m) => [m.data, m.seq])).toEqual([['old', '1'], ['new', '1']]);
  });
});
