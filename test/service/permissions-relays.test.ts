/**
 * Room permissions on relay processes over real Redis (issue 17.2): a refused join or publish gets `forbidden` and
 * subscribes nothing (the room's channel has no subscriber on any node), standalone and cluster.
 */
import { expect } from '@jest/globals';
import { signHs256Token } from '../../service/auth';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import type { RedisServer } from '../helpers/redis-server';
import type { RelayProcess } from '../helpers/relay-process';
import type { TestClient } from '../helpers/ws-client';

const SECRET = 'permissions-relays-secret-0123';
const relays = useRelays();
const clients = useClients();
const redis = useRedis();

function token(claims: Record<string, unknown>): string {
  return signHs256Token({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET);
}

interface Backend {
  /** The relays' environment for this backend. */
  readonly env: Record<string, string>;
  /** Subscribers of a room's channel, summed over every node. */
  subscribers(room: string): Promise<number>;
}

async function standalone(prefix: string): Promise<Backend> {
  const server = await redis.start();
  return { env: { REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: prefix }, subscribers: (room) => numsub([server], 'NUMSUB', `${prefix}:room:{${room}}`) };
}

async function cluster(prefix: string): Promise<Backend> {
  const c = await redis.cluster(3);
  return {
    env: { REDIS_URL: c.url, REDIS_MODE: 'cluster', RELAY_CHANNEL_PREFIX: prefix },
    subscribers: (room) => numsub(c.nodes, 'SHARDNUMSUB', `${prefix}:room:{${room}}`),
  };
}

async function numsub(nodes: readonly RedisServer[], command: 'NUMSUB' | 'SHARDNUMSUB', channel: string): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const [name, count] = (await node.cli('PUBSUB', command, channel)).trim().split('\n');
    expect(name).toBe(channel);
    total += Number(count);
  }
  return total;
}

async function connect(relay: RelayProcess, claims: Record<string, unknown>): Promise<TestClient> {
  return clients.connect(`${relay.wsUrl}?token=${token(claims)}`);
}

describe.each([
  ['standalone Redis', standalone],
  ['Redis cluster', cluster],
])('room permissions on two relays, %s', (_name, makeBackend) => {
  it('refuses joins and publishes the token does not allow with forbidden, and subscribes nothing', async () => {
    const backend = await makeBackend('perm');
    const [a, b] = await relays.pair({ ...backend.env, RELAY_TOKEN_SECRET: SECRET, RELAY_DEFAULT_ROOM_ACCESS: 'none' });
    const reader = await connect(a, { sub: 'reader', rooms: { 'news:*': ['join'] } });
    const writer = await connect(b, { sub: 'writer', rooms: { 'news:*': ['publish'], 'news:sports': ['join', 'publish'] } });
    const nobody = await connect(b, { sub: 'nobody' });

    expect(await nobody.request({ type: 'join', room: 'news:local', id: 'j' })).toEqual({
      type: 'error',
      id: 'j',
      code: 'forbidden',
      message: 'your token has no "rooms" claim and RELAY_DEFAULT_ROOM_ACCESS is none: it may not join in any room',
    });
    expect(await writer.request({ type: 'join', room: 'news:local', id: 'j' })).toEqual({
      type: 'error',
      id: 'j',
      code: 'forbidden',
      message: 'your token does not allow join in room "news:local" (see its "rooms" claim)',
    });
    expect(await reader.request({ type: 'join', room: 'private', id: 'j' })).toMatchObject({ code: 'forbidden' });
    expect(await reader.request({ type: 'join', room: 'user:writer', id: 'u' })).toEqual({
      type: 'error',
      id: 'u',
      code: 'forbidden',
      message: 'room "user:writer" belongs to another user: only the token whose sub is "writer" may join it',
    });
    // Nothing was subscribed for the refused joins, on any node.
    for (const room of ['news:local', 'private', 'user:writer']) expect([room, await backend.subscribers(room)]).toEqual([room, 0]);

    // Allowed: a join subscribes its relay (so the count above could have been non-zero), a publish crosses over.
    expect(await reader.request({ type: 'join', room: 'news:local', id: 'ok' })).toMatchObject({ type: 'ack', id: 'ok' });
    expect(await backend.subscribers('news:local')).toBe(1);
    expect(await writer.request({ type: 'publish', room: 'news:local', data: 'headline', id: 'p' })).toMatchObject({ type: 'ack', id: 'p' });
    expect((await reader.waitForMessages(1)).map((m) => m.data)).toEqual(['headline']);

    // Refused publishes deliver nothing: the reader may not publish, nobody may not, no one may broadcast.
    expect(await reader.request({ type: 'publish', room: 'news:local', data: 'spoof', id: 'p' })).toMatchObject({ code: 'forbidden' });
    expect(await nobody.request({ type: 'publish', room: 'news:local', data: 'spoof', id: 'p' })).toMatchObject({ code: 'forbidden' });
    expect(await writer.request({ type: 'publish', data: 'to all', id: 'b' })).toEqual({
      type: 'error',
      id: 'b',
      code: 'forbidden',
      message: 'your token does not allow publishing without a room (it needs the claim "broadcast": true)',
    });
    // A later allowed publish arrives next: the refused ones were never delivered.
    await writer.request({ type: 'publish', room: 'news:local', data: 'second', id: 'p2' });
    expect((await reader.waitForMessages(2)).map((m) => m.data)).toEqual(['headline', 'second']);
    expect(reader.messages()).toHaveLength(2);
  });

  it('lets a user join its own user: room only, and a broadcast token broadcast', async () => {
    const backend = await makeBackend('own');
    const [a, b] = await relays.pair({ ...backend.env, RELAY_TOKEN_SECRET: SECRET });
    const alice = await connect(a, { sub: 'alice' });
    const bob = await connect(b, { sub: 'bob', broadcast: true });
    expect(await alice.request({ type: 'join', room: 'user:alice', id: 'j' })).toMatchObject({ type: 'ack', id: 'j' });
    expect(await bob.request({ type: 'join', room: 'user:alice', id: 'j' })).toMatchObject({ type: 'error', code: 'forbidden' });
    expect(await backend.subscribers('user:alice')).toBe(1);
    // RELAY_DEFAULT_ROOM_ACCESS unset is `all`: bob may publish to alice's room, and broadcast.
    await bob.request({ type: 'publish', room: 'user:alice', data: 'hi alice', id: 'p' });
    await bob.request({ type: 'publish', data: 'hi all', id: 'b' });
    expect((await alice.waitForMessages(2)).map((m) => m.data)).toEqual(['hi alice', 'hi all']);
  });
});
