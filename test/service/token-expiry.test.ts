/** Token expiry on open connections (issue 16.7): notice, refresh, and the close at exp + grace, on relay processes. */
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { signHs256Token } from '../../service/auth';
import { RelayClient, type RelayClientEvents } from '../../service/public/relay-client';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { waitUntil } from '../helpers/redis-server';
import type { RelayProcess } from '../helpers/relay-process';
import type { Frame, TestClient } from '../helpers/ws-client';

const SECRET = 'token-expiry-secret-0123456789';
const GRACE_MS = 600;
const TOKEN_ENV = { RELAY_TOKEN_SECRET: SECRET, RELAY_TOKEN_EXPIRY_GRACE_MS: String(GRACE_MS) };

const relays = useRelays();
const clients = useClients();

/** A token that expires `seconds` from now (rounded down to whole seconds, as `exp` is). */
function shortToken(sub: string, seconds = 2, extra: Record<string, unknown> = {}): { token: string; exp: number } {
  const exp = Math.floor(Date.now() / 1000) + seconds;
  return { token: signHs256Token({ sub, exp, ...extra }, SECRET), exp };
}

function longToken(sub: string | undefined, extra: Record<string, unknown> = {}): string {
  return signHs256Token({ ...(sub === undefined ? {} : { sub }), exp: Math.floor(Date.now() / 1000) + 3600, ...extra }, SECRET);
}

async function connect(relay: RelayProcess, token: string): Promise<TestClient> {
  return clients.connect(`${relay.wsUrl}?token=${token}`);
}

/** Records when each frame and the close arrive. */
function stamp(client: TestClient): { readonly at: Map<Frame, number>; closedAt: number } {
  const times = { at: new Map<Frame, number>(), closedAt: 0 };
  client.ws.on('message', () => times.at.set(client.frames[client.frames.length - 1], Date.now()));
  client.ws.on('close', () => {
    times.closedAt = Date.now();
  });
  return times;
}

describe('token expiry on open connections', () => {
  it('sends token_expiring before exp, then closes with 4001 at exp + grace; nothing is published after', async () => {
    const relay = await relays.start(TOKEN_ENV);
    const observer = await connect(relay, longToken('observer'));
    await observer.request({ type: 'join', room: 'expiry', id: 'j' });
    const { token, exp } = shortToken('alice');
    const alice = await connect(relay, token);
    const times = stamp(alice);
    expect(await alice.request({ type: 'publish', room: 'expiry', data: 'before', id: 'p1' })).toMatchObject({ type: 'ack', id: 'p1' });

    const notice = await alice.waitFor((f) => f.type === 'token_expiring');
    expect(notice).toEqual({ type: 'token_expiring', exp, closeAt: exp * 1000 + GRACE_MS });
    await waitUntil(() => times.at.has(notice), 1000, 'the notice to be stamped');
    expect(times.at.get(notice)).toBeLessThan(exp * 1000);

    expect(await alice.waitClose(exp * 1000 + GRACE_MS - Date.now() + 5000)).toEqual({ code: 4001, reason: 'token expired' });
    expect(times.closedAt).toBeGreaterThanOrEqual(exp * 1000 + GRACE_MS);
    // The closed connection can send nothing more: the observer saw the one message from before, and only it.
    expect(observer.messages().map((m) => m.data)).toEqual(['before']);
    expect(alice.ws.readyState).toBe(WebSocket.CLOSED);
  });

  it('takes a refresh with a new token of the same sub and keeps the connection open past the old exp + grace', async () => {
    const relay = await relays.start(TOKEN_ENV);
    const { token, exp } = shortToken('alice');
    const alice = await connect(relay, token);
    // Same expiry, never refreshed: its close shows that the old token's exp + grace has passed.
    const sentinel = await connect(relay, shortToken('sentinel').token);
    await alice.request({ type: 'join', room: 'kept', id: 'j' });
    await alice.waitFor((f) => f.type === 'token_expiring');
    const refreshed = longToken('alice');
    const newExp = (JSON.parse(Buffer.from(refreshed.split('.')[1], 'base64url').toString()) as { exp: number }).exp;
    expect(await alice.request({ type: 'refresh', token: refreshed, id: 'r' })).toEqual({ type: 'ack', id: 'r', exp: newExp });

    expect((await sentinel.waitClose(exp * 1000 + GRACE_MS - Date.now() + 5000)).code).toBe(4001);
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 + GRACE_MS);
    expect(await alice.request({ type: 'publish', room: 'kept', data: 'after', id: 'p' })).toMatchObject({ type: 'ack', id: 'p' });
    expect((await alice.waitForMessages(1)).map((m) => m.data)).toEqual(['after']);
    expect(alice.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('refuses a refresh with another sub, a bad signature, an expired or malformed token, and still closes on time', async () => {
    const relay = await relays.start(TOKEN_ENV);
    const { token, exp } = shortToken('alice', 3);
    const alice = await connect(relay, token);
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, string]> = [
      [longToken('mallory'), 'refresh refused: the new token is for sub "mallory", this connection for sub "alice"; a refresh must keep the sub (connect again to change user)'],
      [longToken(undefined), 'refresh refused: the new token is for no sub, this connection for sub "alice"; a refresh must keep the sub (connect again to change user)'],
      [signHs256Token({ sub: 'alice', exp: now + 3600 }, 'another-secret-0123456789'), 'refresh refused: token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256'],
      [signHs256Token({ sub: 'alice', exp: now - 10 }, SECRET), `refresh refused: token expired at ${new Date((now - 10) * 1000).toISOString()}; request a new one`],
      [longToken('alice', { rooms: ['lobby'] }), 'refresh refused: token claim rooms must be an object mapping room patterns to lists of actions, e.g. {"chat:*":["join","publish"]}; received an array'],
      [`${longToken('alice')}=`, 'refresh refused: token signature is not canonical base64url (A-Z a-z 0-9 - _ only, no padding)'],
      ['not-a-jwt', 'refresh refused: token is not a JWT (expected header.payload.signature)'],
    ];
    for (const [i, [bad, message]] of cases.entries()) {
      expect(await alice.request({ type: 'refresh', token: bad, id: `r${i}` })).toEqual({ type: 'error', id: `r${i}`, code: 'unauthorized', message });
    }
    expect(await alice.request({ type: 'refresh', id: 'shape' })).toEqual({
      type: 'error',
      id: 'shape',
      code: 'bad_frame',
      message: 'refresh needs a "token" string (an HS256 JWT of at most 4096 characters); received nothing',
    });
    // The refusals did not touch the connection's token: it expires as the first one said.
    expect(await alice.waitClose(exp * 1000 + GRACE_MS - Date.now() + 5000)).toEqual({ code: 4001, reason: 'token expired' });
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 + GRACE_MS);
  });

  it('answers refresh with bad_frame when the relay does not use tokens', async () => {
    const relay = await relays.start();
    const c = await clients.connect(relay);
    expect(await c.request({ type: 'refresh', token: longToken('a'), id: 'r' })).toEqual({
      type: 'error',
      id: 'r',
      code: 'bad_frame',
      message: 'this relay does not use tokens (RELAY_TOKEN_SECRET is unset): there is nothing to refresh',
    });
  });

  it('leaves the rooms a refreshed token may no longer join', async () => {
    const relay = await relays.start(TOKEN_ENV);
    const alice = await connect(relay, longToken('alice', { rooms: { 'a:*': ['join', 'publish'] } }));
    await alice.request({ type: 'join', room: 'a:1', id: 'j1' });
    await alice.request({ type: 'join', room: 'a:2', id: 'j2' });
    const narrower = longToken('alice', { rooms: { 'a:1': ['join'] } });
    expect(await alice.request({ type: 'refresh', token: narrower, id: 'r' })).toMatchObject({ type: 'ack', id: 'r', left: ['a:2'] });
    expect(await alice.request({ type: 'publish', room: 'a:1', data: 1, id: 'p' })).toMatchObject({ type: 'error', code: 'forbidden' });
  });
});

describe('relay-client.js with getToken', () => {
  const redis = useRedis();

  it('connects with getToken(), refreshes by itself on token_expiring and keeps receiving', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair({ ...TOKEN_ENV, REDIS_URL: server.url });
    const issued: number[] = [];
    const client = clients.track(
      new RelayClient({
        urls: [a.wsUrl],
        WebSocket,
        backoff: { initialMs: 50, maxMs: 400 },
        // Asynchronous, as a fetch to the app's backend would be; every token lives 2 s at most.
        getToken: async () => {
          await Promise.resolve();
          const { token, exp } = shortToken('reader');
          issued.push(exp);
          return token;
        },
      }),
    );
    const closes: Array<RelayClientEvents['close']> = [];
    const errors: Array<RelayClientEvents['error']> = [];
    const received: unknown[] = [];
    client.on('close', (e) => closes.push(e));
    client.on('error', (e) => errors.push(e));
    client.on('message', (m) => received.push(m.data));
    await client.connect();
    await client.join('feed');
    const publisher = await connect(b, longToken('writer'));

    // Publish across the relays while the client's tokens come and go: three refreshes mean the first token, and
    // the two after it, expired while the connection stayed open.
    let n = 0;
    await waitUntil(
      async () => {
        await publisher.request({ type: 'publish', room: 'feed', data: n, id: `p${n}` });
        n++;
        return issued.length >= 4;
      },
      20_000,
      'three token refreshes',
    );
    await waitUntil(() => received.length === n, 5000, `all ${n} messages to arrive`);
    expect(received).toEqual([...Array(n).keys()]);
    expect(Date.now()).toBeGreaterThan(issued[0] * 1000 + GRACE_MS);
    expect({ closes, errors }).toEqual({ closes: [], errors: [] });
  });

  it('fetches a new token for every reconnect', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair({ ...TOKEN_ENV, REDIS_URL: server.url });
    let calls = 0;
    const client = clients.track(
      new RelayClient({
        urls: [a.wsUrl, b.wsUrl],
        WebSocket,
        backoff: { initialMs: 50, maxMs: 400 },
        getToken: () => {
          calls++;
          return longToken('rover');
        },
      }),
    );
    await client.connect();
    expect(calls).toBe(1);
    const reopened = new Promise<RelayClientEvents['open']>((resolve) => client.on('open', resolve));
    await a.stop();
    expect((await reopened).url).toBe(b.wsUrl);
    expect(calls).toBeGreaterThanOrEqual(2);
  });

  it('emits token_failed and retries when getToken() fails', async () => {
    const relay = await relays.start(TOKEN_ENV);
    let calls = 0;
    const client = clients.track(
      new RelayClient({
        urls: [relay.wsUrl],
        WebSocket,
        backoff: { initialMs: 50, maxMs: 100 },
        getToken: () => {
          calls++;
          if (calls === 1) throw new Error('auth backend down');
          return longToken('late');
        },
      }),
    );
    const failed = new Promise<RelayClientEvents['error']>((resolve) => client.on('error', resolve));
    const welcome = await client.connect();
    expect(welcome.url).toBe(relay.wsUrl);
    const err = await failed;
    expect([err.code, err.message]).toEqual(['token_failed', `getToken() failed before connecting to ${relay.wsUrl}: auth backend down`]);
  });
});
