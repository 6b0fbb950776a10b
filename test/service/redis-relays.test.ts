/** Whole relay processes sharing a real redis-server: what two Beanstalk instances behind one ElastiCache do. */
import { expect } from '@jest/globals';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import { waitUntil, type RedisServer } from '../helpers/redis-server';
import type { Frame, TestClient } from '../helpers/ws-client';

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

async function join(client: TestClient, room: string): Promise<void> {
  const reply = await client.request({ type: 'join', room, id: `join-${room}` });
  // History is on by default: the ack carries the room's position.
  expect(reply).toEqual({ type: 'ack', id: `join-${room}`, position: numbered });
}

/** seq and epoch of a numbered message (or a join ack's position). */
const numbered = { seq: expect.stringMatching(/^[0-9]+$/), epoch: expect.any(String) };

/** Generous limits: these tests measure relaying, not the rate limiter. */
function relayEnv(redisUrl: string, prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return trustedEnv({ REDIS_URL: redisUrl, RELAY_CHANNEL_PREFIX: prefix, ...extra });
}

const data = (f: Frame) => f.data;

describe('two relays on one Redis', () => {
  const shared = useRedis({ per: 'block' });
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await shared.start();
  });

  it('relays room and broadcast messages across instances, in order and exactly once', async () => {
    const [r1, r2] = await relays.pair(relayEnv(redis.url, 'pair'));
    expect((await r1.health()).body).toMatchObject({ status: 'ok', backplane: { kind: 'redis', state: 'ready' } });
    const c1 = await clients.connect(r1);
    const c2 = await clients.connect(r2);
    const outsider = await clients.connect(r2);
    expect(c1.welcome.instanceId).not.toBe(c2.welcome.instanceId);
    await join(c1, 'lobby');
    await join(c2, 'lobby');

    const total = 1000;
    for (let i = 0; i < total; i++) c1.send({ type: 'publish', room: 'lobby', data: i });
    c2.send({ type: 'publish', room: 'lobby', data: 'from-c2' });
    const got = await c2.waitForMessages(total + 1, 30_000);
    const fromC1 = got.filter((m) => m.from === c1.welcome.connectionId);
    expect(fromC1.map(data)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(fromC1.every((m) => m.room === 'lobby')).toBe(true);
    await c1.waitForMessages(total + 1, 30_000);
    expect(c1.messages().filter((m) => m.data === 'from-c2')).toEqual([
      { type: 'message', room: 'lobby', data: 'from-c2', from: c2.welcome.connectionId, ...numbered },
    ]);

    c1.send({ type: 'publish', data: 'everyone' });
    const everyone = { type: 'message', data: 'everyone', from: c1.welcome.connectionId, ...numbered };
    await outsider.waitFor((f) => f.data === 'everyone');
    await c2.waitFor((f) => f.data === 'everyone');
    // A last marker through the same path proves nothing else (no duplicate) was still on its way.
    c1.send({ type: 'publish', room: 'lobby', data: 'marker' });
    await c2.waitFor((f) => f.data === 'marker');
    expect(c2.messages()).toHaveLength(total + 3);
    expect(c2.messages().filter((m) => m.data === 'everyone')).toEqual([everyone]);
    expect(outsider.messages()).toEqual([everyone]);
    await c1.waitFor((f) => f.data === 'marker');
    expect(c1.messages()).toHaveLength(total + 3);
  });

  it('isolates two apps through RELAY_CHANNEL_PREFIX', async () => {
    const [a1, a2] = await relays.pair(relayEnv(redis.url, 'app-one'));
    const other = await relays.start(relayEnv(redis.url, 'app-two'));
    await other.waitHealthy(20_000);
    const sender = await clients.connect(a1);
    const sameApp = await clients.connect(a2);
    const otherApp = await clients.connect(other);
    await join(sameApp, 'shared');
    await join(otherApp, 'shared');
    sender.send({ type: 'publish', room: 'shared', data: 'app-one only' });
    sender.send({ type: 'publish', data: 'app-one broadcast' });
    await sameApp.waitFor((f) => f.data === 'app-one broadcast');
    // app-two's own traffic arriving proves its subscriber is live and had the chance to see app-one's frames.
    const otherSender = await clients.connect(other);
    otherSender.send({ type: 'publish', room: 'shared', data: 'app-two' });
    await otherApp.waitFor((f) => f.data === 'app-two');
    expect(otherApp.messages().map(data)).toEqual(['app-two']);
    const channels = (await redis.cli('PUBSUB', 'CHANNELS', 'app-*')).split('\n').filter(Boolean).sort();
    expect(channels).toEqual(['app-one:broadcast', 'app-one:control', 'app-one:room:{shared}', 'app-two:broadcast', 'app-two:control', 'app-two:room:{shared}']);
  });

  it('survives Redis being killed and restarted mid-stream', async () => {
    const [r1, r2] = await relays.pair(relayEnv(redis.url, 'outage'));
    const c1 = await clients.connect(r1);
    const c2 = await clients.connect(r2);
    await join(c1, 'live');
    await join(c2, 'live');

    let sent = 0;
    let streaming = true;
    const stream = (async () => {
      // Bounded: at most 3000 frames, one every 20 ms, while the test runs.
      while (streaming && sent < 3000) {
        c1.send({ type: 'publish', room: 'live', data: sent, id: `p${sent}` });
        sent++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      await c2.waitForMessages(5);
      await redis.kill('SIGKILL');
      await waitUntil(async () => (await r1.health()).status === 503 && (await r2.health()).status === 503, 10_000, 'both relays to report 503');
      expect((await r2.health()).body).toMatchObject({ status: 'degraded', backplane: { kind: 'redis', state: 'down' } });
      // Publishes in flight at the kill fail on the dropped connection; the ones after it are refused up front.
      const refused = await c1.waitFor(
        (f) => f.type === 'error' && f.code === 'backplane_unavailable' && String(f.message).includes('is down'),
        10_000,
      );
      expect(refused.message).toBe('the redis backplane is down; the message was not delivered, retry shortly');

      await redis.restart();
      await Promise.all([r1.waitHealthy(20_000), r2.waitHealthy(20_000)]);
      const resumedFrom = sent;
      await c2.waitFor((f) => f.type === 'message' && typeof f.data === 'number' && f.data > resumedFrom, 15_000);
    } finally {
      streaming = false;
      await stream;
    }
    const received = c2.messages().map(data) as number[];
    expect(new Set(received).size).toBe(received.length);
    expect([...received].sort((a, b) => a - b)).toEqual(received);
    expect(r1.proc.exitCode).toBeNull();
    expect(r2.proc.exitCode).toBeNull();
    // Clients stayed connected through the outage.
    expect((await c1.request({ type: 'ping', id: 'still-there' })).type).toBe('pong');
    expect((await c2.request({ type: 'ping', id: 'still-there' })).type).toBe('pong');
  });
});

describe('two relays on a TLS-only Redis with AUTH', () => {
  it('relays through rediss:// with REDIS_AUTH_TOKEN and REDIS_TLS_CA_FILE and never logs the token', async () => {
    const password = 'tls-relay-s3cret';
    const redis = await redisServers.start({ tls: true, password });
    const env = relayEnv(`rediss://127.0.0.1:${redis.port}`, 'secure', {
      REDIS_AUTH_TOKEN: password,
      REDIS_TLS_CA_FILE: redis.caFile ?? '',
    });
    const [r1, r2] = await relays.pair(env);
    const c1 = await clients.connect(r1);
    const c2 = await clients.connect(r2);
    await join(c2, 'vault');
    c1.send({ type: 'publish', room: 'vault', data: { secret: false } });
    const [message] = await c2.waitForMessages(1);
    expect(message).toEqual({ type: 'message', room: 'vault', data: { secret: false }, from: c1.welcome.connectionId, seq: '1', epoch: expect.any(String) });
    expect(await redis.cli('PUBSUB', 'NUMSUB', 'secure:room:{vault}')).toBe('secure:room:{vault}\n1\n');
    expect([...r1.logs, ...r2.logs].join('\n')).not.toContain(password);
  });

  it('stays up and reports the AUTH failure when the token is wrong', async () => {
    const redis = await redisServers.start({ tls: true, password: 'right' });
    const relay = await relays.start(
      relayEnv(`rediss://127.0.0.1:${redis.port}`, 'wrong', { REDIS_AUTH_TOKEN: 'wrong', REDIS_TLS_CA_FILE: redis.caFile ?? '' }),
    );
    await waitUntil(async () => {
      const { body } = await relay.healthDetail();
      return typeof (body.backplane as { lastError?: unknown }).lastError === 'string';
    }, 10_000, 'the AUTH failure to show in /healthz/detail');
    const detail = await relay.healthDetail();
    expect(detail.status).toBe(503);
    expect(detail.body.backplane).toEqual({ kind: 'redis', state: 'connecting', lastError: expect.stringMatching(/WRONGPASS/) });
    // The public health check says that it is down, not why: error texts name internal hosts.
    const health = await relay.health();
    expect(health.status).toBe(503);
    expect(health.body.backplane).toEqual({ kind: 'redis', state: 'connecting' });
    expect(relay.proc.exitCode).toBeNull();
    const client = await clients.connect(relay);
    const reply = await client.request({ type: 'publish', data: 'x', id: 'p1' });
    expect(reply).toMatchObject({ type: 'error', id: 'p1', code: 'backplane_unavailable' });
  });
});
