/**
 * The server API on one relay process with the in-memory backplane (docs/protocol.md, "Server API"): the key, every
 * refusal and its code, publishes to rooms, broadcasts and users, idempotency, disconnect and the room endpoint.
 * Across relays over Redis: server-api-relays.test.ts.
 */
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { signHs256Token } from '../../service/auth';
import { ConfigError, loadServiceConfig } from '../../service/config';
import { RelayClient } from '../../service/public/relay-client';
import { nextEvent } from '../helpers/client-events';
import { useClients, useRelays } from '../helpers/fixtures';
import type { RelayProcess } from '../helpers/relay-process';
import { API_KEY, callApi, errorCode } from '../helpers/server-api';
import type { TestClient } from '../helpers/ws-client';

const SECRET = 'server-api-token-secret-0123';
const relays = useRelays();
const clients = useClients();

function token(sub: string): string {
  return signHs256Token({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET);
}

async function member(relay: RelayProcess, room: string, sub = 'someone'): Promise<TestClient> {
  const c = await clients.connect(`${relay.wsUrl}?token=${token(sub)}`);
  expect((await c.request({ type: 'join', room, id: 'j' })).type).toBe('ack');
  return c;
}

/** Publishes a marker through the API and waits until `c` has it: every message sent before it has arrived too. */
async function flushed(relay: RelayProcess, c: TestClient, room: string): Promise<void> {
  const res = await callApi(relay, '/api/publish', { body: { room, data: 'marker' } });
  expect(res.status).toBe(200);
  await c.waitFor((f) => f.type === 'message' && f.data === 'marker');
}

describe('RELAY_API_KEY', () => {
  it('accepts one key, or two during a rotation', () => {
    const one = loadServiceConfig({ RELAY_API_KEY: API_KEY }).apiKeys;
    expect([one?.accepts(API_KEY), one?.accepts(`${API_KEY}-next`)]).toEqual([true, false]);
    // Spaces around the comma are trimmed.
    const two = loadServiceConfig({ RELAY_API_KEY: `${API_KEY}, ${API_KEY}-next` }).apiKeys;
    expect([two?.accepts(API_KEY), two?.accepts(`${API_KEY}-next`), two?.accepts(` ${API_KEY}-next`)]).toEqual([true, true, false]);
    expect(loadServiceConfig({}).apiKeys).toBeNull();
    expect(loadServiceConfig({}).apiIdempotencyWindowMs).toBe(300_000);
  });

  it('fails for a short key or three keys, naming them by position and length, never by value', () => {
    const short = 'short-secret-key';
    const err = (() => {
      try {
        loadServiceConfig({ RELAY_API_KEY: `${API_KEY},${short}` });
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('RELAY_API_KEY="***": expected one or two keys of 32-512 printable characters');
    expect(err.message).toContain('key 2 has 16 characters');
    expect(err.message).not.toContain(short);
    expect(err.message).not.toContain(API_KEY);
    expect(() => loadServiceConfig({ RELAY_API_KEY: [API_KEY, API_KEY, API_KEY].join(',') })).toThrow(/3 keys given, at most 2 are accepted/);
  });
});

describe('server API on one relay (in-memory backplane)', () => {
  it('does not exist without RELAY_API_KEY: 404 like any unknown path', async () => {
    const relay = await relays.start();
    const res = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 1 } });
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', message: 'no such path: /api/publish' });
  });

  it('refuses requests without the key, or with a wrong one, with 401 and delivers nothing', async () => {
    const relay = await relays.start({ RELAY_API_KEY: API_KEY, RELAY_TOKEN_SECRET: SECRET });
    const c = await member(relay, 'lobby');
    const none = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 'no key' }, noAuth: true });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(none.body).toEqual({ error: { code: 'unauthorized', message: 'no Authorization header; send Authorization: Bearer <RELAY_API_KEY>' } });
    const wrong = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 'wrong key' }, headers: { Authorization: `Bearer ${API_KEY}x` } });
    expect(wrong.status).toBe(401);
    expect(errorCode(wrong)).toBe('unauthorized');
    const basic = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 'basic' }, headers: { Authorization: 'Basic dXNlcjpwYXNz' } });
    expect(basic.status).toBe(401);
    await flushed(relay, c, 'lobby');
    expect(c.messages().map((m) => m.data)).toEqual(['marker']);
  });

  it('accepts both keys of a rotation', async () => {
    const next = `${API_KEY}-next-key`;
    const relay = await relays.start({ RELAY_API_KEY: `${API_KEY},${next}` });
    expect((await callApi(relay, '/api/publish', { body: { data: 1 } })).status).toBe(200);
    expect((await callApi(relay, '/api/publish', { body: { data: 2 }, headers: { Authorization: `Bearer ${next}` } })).status).toBe(200);
  });

  it('refuses bad input with the wire protocol codes and delivers nothing', async () => {
    const relay = await relays.start({ RELAY_API_KEY: API_KEY, RELAY_TOKEN_SECRET: SECRET, RELAY_MAX_PAYLOAD_BYTES: '1024' });
    const c = await member(relay, 'lobby');
    const badRoom = await callApi(relay, '/api/publish', { body: { room: 'no spaces', data: 1 } });
    expect(badRoom.status).toBe(400);
    expect(badRoom.body).toEqual({
      error: { code: 'invalid_room', message: '"room" must be a room name of 1-128 characters of A-Z a-z 0-9 : _ . -; received the string "no spaces"' },
    });
    const notJson = await callApi(relay, '/api/publish', { body: '{"room": "lobby", data', headers: { 'Content-Type': 'application/json' } });
    expect(notJson.status).toBe(400);
    expect(errorCode(notJson)).toBe('bad_frame');
    const wrongType = await callApi(relay, '/api/publish', { body: 'room=lobby&data=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    expect(wrongType.status).toBe(415);
    expect(errorCode(wrongType)).toBe('bad_frame');
    const tooBig = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 'x'.repeat(4096) } });
    expect(tooBig.status).toBe(413);
    expect(errorCode(tooBig)).toBe('too_large');
    // Without a length up front the body is counted as it arrives, and refused once it passes the limit.
    const chunked = await callApi(relay, '/api/publish', { body: JSON.stringify({ room: 'lobby', data: 'x'.repeat(4096) }), headers: { 'Transfer-Encoding': 'chunked' } });
    expect(chunked.status).toBe(413);
    expect(errorCode(chunked)).toBe('too_large');
    // The body fits, the frame (with its room and sender) does not.
    const frameTooBig = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 'x'.repeat(990) } });
    expect(frameTooBig.status).toBe(413);
    expect(errorCode(frameTooBig)).toBe('too_large');
    const noData = await callApi(relay, '/api/publish', { body: { room: 'lobby' } });
    expect(noData.status).toBe(400);
    expect(noData.body).toEqual({ error: { code: 'bad_frame', message: 'publish needs a "data" field (any JSON value), e.g. {"room":"lobby","data":{"text":"hi"}}' } });
    const unknownField = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 1, rooms: ['a'] } });
    expect(unknownField.status).toBe(400);
    expect(errorCode(unknownField)).toBe('bad_frame');
    const both = await callApi(relay, '/api/publish', { body: { room: 'lobby', user: 'u', data: 1 } });
    expect(both.status).toBe(400);
    const badKey = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: 1, idempotencyKey: 'has space' } });
    expect(badKey.status).toBe(400);
    expect(errorCode(badKey)).toBe('bad_frame');
    const array = await callApi(relay, '/api/publish', { body: [1, 2] });
    expect(array.status).toBe(400);
    const method = await callApi(relay, '/api/publish', { method: 'GET' });
    expect(method.status).toBe(405);
    expect(method.headers.allow).toBe('POST');
    const unknown = await callApi(relay, '/api/nothing', { body: {} });
    expect(unknown.status).toBe(404);
    expect(errorCode(unknown)).toBe('not_found');
    const badRoomInfo = await callApi(relay, '/api/rooms/a%20b');
    expect(badRoomInfo.status).toBe(400);
    expect(errorCode(badRoomInfo)).toBe('invalid_room');
    await flushed(relay, c, 'lobby');
    expect(c.messages().map((m) => m.data)).toEqual(['marker']);
  });

  it('publishes to a room through the history (seq and epoch), broadcasts without a room, and keeps idempotency keys', async () => {
    const relay = await relays.start({ RELAY_API_KEY: API_KEY, RELAY_TOKEN_SECRET: SECRET });
    const c = await member(relay, 'lobby');
    const first = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: { n: 1 }, idempotencyKey: 'order-1' } });
    expect(first.status).toBe(200);
    const delivered = await c.waitFor((f) => f.type === 'message' && f.room === 'lobby');
    expect(delivered).toMatchObject({ data: { n: 1 }, from: 'server', seq: first.body.seq, epoch: first.body.epoch });
    const again = await callApi(relay, '/api/publish', { body: { room: 'lobby', data: { n: 1 }, idempotencyKey: 'order-1' } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    const broadcast = await callApi(relay, '/api/publish', { body: { data: 'to all' } });
    expect(broadcast.status).toBe(200);
    await c.waitFor((f) => f.type === 'message' && f.data === 'to all' && f.room === undefined);
    await flushed(relay, c, 'lobby');
    expect(c.messages().map((m) => m.data)).toEqual([{ n: 1 }, 'to all', 'marker']);
    // The room's position follows the publishes; the members are counted.
    const info = await callApi(relay, '/api/rooms/lobby');
    expect(info.status).toBe(200);
    expect(info.body).toEqual({ room: 'lobby', members: 1, instances: 1, position: { seq: '2', epoch: first.body.epoch } });
  });

  it('answers 429 rate_limited over RELAY_API_RATE_LIMIT and delivers nothing', async () => {
    const relay = await relays.start({ RELAY_API_KEY: API_KEY, RELAY_API_RATE_LIMIT: '2' });
    const c = await clients.connect(relay.wsUrl);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => callApi(relay, '/api/publish', { body: { data: i } })));
    const limited = answers.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited.map(errorCode)).toEqual(limited.map(() => 'rate_limited'));
    expect(limited[0]?.headers['retry-after']).toBe('1');
    const accepted = answers.filter((r) => r.status === 200).length;
    await c.waitForMessages(accepted);
    expect(c.messages()).toHaveLength(accepted);
  });

  it('sends a user publish to every connection of that user, and disconnects them with 4003 so relay-client.js stops', async () => {
    const relay = await relays.start({ RELAY_API_KEY: API_KEY, RELAY_TOKEN_SECRET: SECRET });
    const a = await clients.connect(`${relay.wsUrl}?token=${token('alice')}`);
    const b = await clients.connect(`${relay.wsUrl}?token=${token('bob')}`);
    const rc = clients.track(new RelayClient({ urls: [`${relay.wsUrl}?token=${token('alice')}`], WebSocket, backoff: { initialMs: 20, maxMs: 50 } }));
    await rc.connect();
    const rcMessage = nextEvent(rc, 'message', (m) => m.user === 'alice');
    const res = await callApi(relay, '/api/publish', { body: { user: 'alice', data: 'hi alice', idempotencyKey: 'u-1' } });
    expect(res.body).toEqual({ published: true });
    expect(await a.waitFor((f) => f.type === 'message')).toMatchObject({ user: 'alice', data: 'hi alice', from: 'server' });
    expect((await rcMessage).data).toBe('hi alice');
    expect((await callApi(relay, '/api/publish', { body: { user: 'alice', data: 'hi alice', idempotencyKey: 'u-1' } })).body).toEqual({ published: true });
    // A later message arrives after anything the repeated request could have sent.
    expect((await callApi(relay, '/api/publish', { body: { user: 'alice', data: 'second' } })).status).toBe(200);
    await a.waitFor((f) => f.type === 'message' && f.data === 'second');

    const closed = nextEvent(rc, 'close');
    const off = await callApi(relay, '/api/disconnect', { body: { user: 'alice' } });
    expect(off.body).toEqual({ closed: 2, instances: 1 });
    expect(await a.waitClose(1000)).toEqual({ code: 4003, reason: 'disconnected by the server' });
    expect(await closed).toMatchObject({ code: 4003, willReconnect: false, disconnected: true });
    expect(rc.state).toBe('closed');
    expect(a.messages().map((m) => m.data)).toEqual(['hi alice', 'second']);
    expect(b.messages()).toEqual([]);
    const byId = await callApi(relay, '/api/disconnect', { body: { connectionId: b.welcome.connectionId } });
    expect(byId.body).toEqual({ closed: 1, instances: 1 });
    expect((await b.waitClose(1000)).code).toBe(4003);
  });
});
