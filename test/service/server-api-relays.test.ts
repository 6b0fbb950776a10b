/**
 * The server API across two relay processes over real Redis, standalone and cluster (issue 17, Tests): a publish to
 * relay A reaches the room's members on A and B exactly once with the response's seq; idempotency keys; 401 and bad
 * input deliver nothing; a user's connections on both relays each get one copy and are disconnected within 1 s;
 * the room endpoint counts members on every instance; Redis down answers 503.
 */
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { signHs256Token } from '../../service/auth';
import { RelayClient } from '../../service/public/relay-client';
import { nextEvent } from '../helpers/client-events';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import type { RelayProcess } from '../helpers/relay-process';
import { API_KEY, callApi, errorCode } from '../helpers/server-api';
import type { TestClient } from '../helpers/ws-client';

const SECRET = 'server-api-relays-secret-0123';
const relays = useRelays();
const clients = useClients();
const redis = useRedis();

function token(sub: string): string {
  return signHs256Token({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET);
}

async function standalone(): Promise<Record<string, string>> {
  const server = await redis.start();
  return { REDIS_URL: server.url };
}

async function cluster(): Promise<Record<string, string>> {
  const c = await redis.cluster(3);
  return { REDIS_URL: c.url, REDIS_MODE: 'cluster' };
}

async function pair(backend: Record<string, string>): Promise<[RelayProcess, RelayProcess]> {
  return relays.pair({ ...backend, RELAY_API_KEY: API_KEY, RELAY_TOKEN_SECRET: SECRET, RELAY_CHANNEL_PREFIX: 'api-test' });
}

async function member(relay: RelayProcess, room: string, sub = 'member'): Promise<TestClient> {
  const c = await clients.connect(`${relay.wsUrl}?token=${token(sub)}`);
  expect((await c.request({ type: 'join', room, id: 'j' })).type).toBe('ack');
  return c;
}

/** Publishes a marker to the room and waits until every client has it: whatever was published before it arrived too. */
async function flushed(relay: RelayProcess, members: TestClient[], room: string): Promise<void> {
  expect((await callApi(relay, '/api/publish', { body: { room, data: 'marker' } })).status).toBe(200);
  await Promise.all(members.map((c) => c.waitFor((f) => f.type === 'message' && f.data === 'marker')));
}

describe.each([
  ['standalone Redis', standalone],
  ['Redis cluster', cluster],
])('server API on two relays, %s', (_name, backend) => {
  it('delivers a publish to relay A exactly once to the members on A and B, with the seq of the response', async () => {
    const [a, b] = await pair(await backend());
    const onA = await member(a, 'orders');
    const onB = await member(b, 'orders');
    const res = await callApi(a, '/api/publish', { body: { room: 'orders', data: { id: 7 } } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ seq: expect.stringMatching(/^\d+$/), epoch: expect.any(String) });
    for (const c of [onA, onB]) {
      const m = await c.waitFor((f) => f.type === 'message' && f.room === 'orders');
      expect(m).toMatchObject({ data: { id: 7 }, from: 'server', seq: res.body.seq, epoch: res.body.epoch });
    }
    // The same idempotency key twice, once on each relay: one delivery, the same response.
    const first = await callApi(a, '/api/publish', { body: { room: 'orders', data: 'once', idempotencyKey: 'evt-42' } });
    const second = await callApi(b, '/api/publish', { body: { room: 'orders', data: 'once', idempotencyKey: 'evt-42' } });
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.body).toEqual(first.body);
    // A broadcast (no room) reaches both relays too.
    expect((await callApi(b, '/api/publish', { body: { data: 'everyone' } })).status).toBe(200);
    await flushed(a, [onA, onB], 'orders');
    for (const c of [onA, onB]) expect(c.messages().map((m) => m.data)).toEqual([{ id: 7 }, 'once', 'everyone', 'marker']);
    // Recovery: a client that missed messages gets them from the history the API wrote.
    const late = await clients.connect(`${b.wsUrl}?token=${token('late')}`);
    const ack = await late.request({ type: 'join', room: 'orders', id: 'r', since: { seq: '0', epoch: res.body.epoch } });
    expect(ack).toMatchObject({ type: 'ack', recovered: true });
    await late.waitFor((f) => f.type === 'message' && f.data === 'marker');
    expect(late.messages().map((m) => m.data)).toEqual([{ id: 7 }, 'once', 'marker']);

    // The room endpoint: members on both instances, the position of the last publish.
    const info = await callApi(b, '/api/rooms/orders');
    expect(info.status).toBe(200);
    expect(info.body).toMatchObject({ room: 'orders', members: 3, instances: 2, position: { epoch: res.body.epoch, seq: String(Number(res.body.seq) + 2) } });
  });

  it('delivers nothing for a request without the key, with a wrong key, or with bad input', async () => {
    const [a, b] = await pair(await backend());
    const onA = await member(a, 'orders');
    const onB = await member(b, 'orders');
    const noKey = await callApi(a, '/api/publish', { body: { room: 'orders', data: 'x' }, noAuth: true });
    const wrongKey = await callApi(b, '/api/publish', { body: { room: 'orders', data: 'x' }, headers: { Authorization: 'Bearer not-the-key-not-the-key-not-the-key' } });
    const badRoom = await callApi(a, '/api/publish', { body: { room: 'orders!', data: 'x' } });
    const tooBig = await callApi(a, '/api/publish', { body: { room: 'orders', data: 'x'.repeat(70_000) } });
    const notJson = await callApi(a, '/api/publish', { body: 'room=orders', headers: { 'Content-Type': 'application/json' } });
    expect([noKey.status, wrongKey.status, badRoom.status, tooBig.status, notJson.status]).toEqual([401, 401, 400, 413, 400]);
    expect([errorCode(noKey), errorCode(wrongKey), errorCode(badRoom), errorCode(tooBig), errorCode(notJson)]).toEqual([
      'unauthorized',
      'unauthorized',
      'invalid_room',
      'too_large',
      'bad_frame',
    ]);
    await flushed(a, [onA, onB], 'orders');
    for (const c of [onA, onB]) expect(c.messages().map((m) => m.data)).toEqual(['marker']);
  });

  it('sends a user publish once to each of the user’s three connections on two relays, and disconnects all three within 1 s', async () => {
    const [a, b] = await pair(await backend());
    const c1 = await clients.connect(`${a.wsUrl}?token=${token('carol')}`);
    const c2 = await clients.connect(`${b.wsUrl}?token=${token('carol')}`);
    const other = await clients.connect(`${b.wsUrl}?token=${token('dave')}`);
    const rc = clients.track(new RelayClient({ urls: [`${b.wsUrl}?token=${token('carol')}`, `${a.wsUrl}?token=${token('carol')}`], WebSocket, backoff: { initialMs: 20, maxMs: 50 } }));
    const rcMessages: unknown[] = [];
    rc.on('message', (m) => rcMessages.push(m.data));
    await rc.connect();
    const res = await callApi(a, '/api/publish', { body: { user: 'carol', data: 'for carol', idempotencyKey: 'carol-1' } });
    expect(res).toMatchObject({ status: 200, body: { published: true } });
    const again = await callApi(b, '/api/publish', { body: { user: 'carol', data: 'for carol', idempotencyKey: 'carol-1' } });
    expect(again.body).toEqual(res.body);
    const rcSecond = nextEvent(rc, 'message', (m) => m.data === 'second');
    expect((await callApi(b, '/api/publish', { body: { user: 'carol', data: 'second' } })).status).toBe(200);
    await Promise.all([c1, c2].map((c) => c.waitFor((f) => f.type === 'message' && f.data === 'second')));
    await rcSecond;
    for (const c of [c1, c2]) expect(c.messages().map((m) => [m.user, m.data, m.from])).toEqual([['carol', 'for carol', 'server'], ['carol', 'second', 'server']]);
    expect(rcMessages).toEqual(['for carol', 'second']);

    const rcClosed = nextEvent(rc, 'close');
    let reconnects = 0;
    rc.on('reconnecting', () => reconnects++);
    const started = Date.now();
    const off = await callApi(b, '/api/disconnect', { body: { user: 'carol' } });
    expect(off.status).toBe(200);
    expect(off.body).toEqual({ closed: 3, instances: 2 });
    const closes = await Promise.all([c1.waitClose(1000), c2.waitClose(1000), rcClosed]);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(closes.map((c) => c.code)).toEqual([4003, 4003, 4003]);
    expect(closes[2]).toMatchObject({ willReconnect: false, disconnected: true });
    expect(rc.state).toBe('closed');
    // Nothing reconnects: the relays hold no connection of carol (the disconnect finds none) and dave is untouched.
    const none = await callApi(a, '/api/disconnect', { body: { user: 'carol' } });
    expect(none.body).toEqual({ closed: 0, instances: 2 });
    expect(reconnects).toBe(0);
    expect(other.messages()).toEqual([]);
    expect(other.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe('server API with message recovery off (RELAY_HISTORY_SIZE=0), standalone Redis', () => {
  it('delivers a publish once on both relays, answers {} and keeps idempotency keys', async () => {
    const [a, b] = await pair({ ...(await standalone()), RELAY_HISTORY_SIZE: '0' });
    const onA = await member(a, 'orders');
    const onB = await member(b, 'orders');
    const first = await callApi(a, '/api/publish', { body: { room: 'orders', data: 'plain', idempotencyKey: 'plain-1' } });
    expect(first).toMatchObject({ status: 200, body: {} });
    const again = await callApi(b, '/api/publish', { body: { room: 'orders', data: 'plain', idempotencyKey: 'plain-1' } });
    expect(again).toMatchObject({ status: 200, body: {} });
    await flushed(b, [onA, onB], 'orders');
    for (const c of [onA, onB]) {
      expect(c.messages().map((m) => m.data)).toEqual(['plain', 'marker']);
      expect(c.messages()[0]).not.toHaveProperty('seq');
    }
    expect((await callApi(a, '/api/rooms/orders')).body).toEqual({ room: 'orders', members: 2, instances: 2, position: null });
  });
});

describe('server API while Redis is down', () => {
  it('answers 503 backplane_unavailable and delivers nothing', async () => {
    const server = await redis.start();
    const [a, b] = await pair({ REDIS_URL: server.url });
    const onA = await member(a, 'orders');
    await server.kill();
    await a.waitLog((r) => r.msg === 'redis backplane down', 10_000);
    const res = await callApi(a, '/api/publish', { body: { room: 'orders', data: 'lost' } });
    expect(res.status).toBe(503);
    expect(errorCode(res)).toBe('backplane_unavailable');
    expect(res.headers['retry-after']).toBe('1');
    const user = await callApi(a, '/api/publish', { body: { user: 'member', data: 'lost' } });
    expect(user.status).toBe(503);
    const info = await callApi(b, '/api/rooms/orders');
    expect(info.status).toBe(503);
    await server.restart();
    await a.waitHealthy(20_000);
    await flushed(a, [onA], 'orders');
    expect(onA.messages().map((m) => m.data)).toEqual(['marker']);
  });
});
