/**
 * Presence across relay processes sharing a real Redis (standalone and cluster): members of every instance listed,
 * joined/left events to watchers on other instances, exactly one `left` per member whether it left, closed or its
 * instance was killed (within RELAY_PRESENCE_TTL_MS), the cap on listed members and RELAY_PRESENCE=off; no
 * presence commands at all for a room nobody asked about; and the members of a relay whose subscription was down when
 * another relay started tracking the room, listed once it is back.
 */
import { expect } from '@jest/globals';
import { signHs256Token } from '../../service/auth';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import { monitorRedis } from '../helpers/redis-monitor';
import { roomsOnDistinctShards, waitUntil, type RedisServer } from '../helpers/redis-server';
import type { RelayProcess } from '../helpers/relay-process';
import { API_KEY, callApi, errorCode } from '../helpers/server-api';
import type { Frame, TestClient } from '../helpers/ws-client';

jest.setTimeout(120_000);

const redis = useRedis();
const relays = useRelays();
const clients = useClients();

const TTL_MS = 2000;
const SECRET = 'presence-relays-secret-0123456';
const token = (sub: string) => signHs256Token({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET);
const connectionIds = (cs: readonly TestClient[]) => cs.map((c) => c.welcome.connectionId as string).sort();
const memberIds = (reply: Frame) => (reply.members as Array<{ connectionId: string }>).map((m) => m.connectionId).sort();
const eventsOf = (watcher: TestClient, type: 'joined' | 'left', room: string) =>
  watcher.frames.filter((f) => f.type === type && f.room === room).map((f) => (f.member as { connectionId: string }).connectionId);

async function joinAcked(cs: readonly TestClient[], room: string, extra: Record<string, unknown> = {}): Promise<void> {
  const acks = await Promise.all(cs.map((c, i) => c.request({ type: 'join', room, id: `j${i}`, ...extra })));
  for (const ack of acks) expect(ack.type).toBe('ack');
}

describe('presence across relays on one Redis', () => {
  it('lists the members of both relays within 1 s of their join acks and tells a watcher on the other relay', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'pres1' }));
    const watcher = await clients.connect(a);
    await joinAcked([watcher], 'team', { presence: true });
    const onA = await clients.connectMany(a, 2);
    const onB = await clients.connectMany(b, 3);
    await Promise.all([joinAcked(onA, 'team'), joinAcked(onB, 'team')]);
    const acked = Date.now();

    const everyone = connectionIds([watcher, ...onA, ...onB]);
    let reply: Frame | undefined;
    for (let i = 0; i < 50 && memberIds(reply ?? { type: 'none', members: [] }).join() !== everyone.join(); i++) {
      reply = await onB[0].request({ type: 'presence', room: 'team', id: `p${i}` });
    }
    expect(Date.now() - acked).toBeLessThan(1000);
    expect(reply).toMatchObject({ type: 'presence', room: 'team', count: 6 });
    expect(memberIds(reply as Frame)).toEqual(everyone);
    const instances = new Map((reply?.members as Array<{ connectionId: string; instanceId: string }>).map((m) => [m.connectionId, m.instanceId]));
    expect(instances.get(onB[0].welcome.connectionId as string)).toBe(onB[0].welcome.instanceId);
    expect(instances.get(onA[0].welcome.connectionId as string)).toBe(onA[0].welcome.instanceId);
    expect(onA[0].welcome.instanceId).not.toBe(onB[0].welcome.instanceId);

    await waitUntil(() => eventsOf(watcher, 'joined', 'team').length === 6, 5000, 'the watcher to hear every joined');
    expect(eventsOf(watcher, 'joined', 'team').sort()).toEqual(everyone);
    expect(Number(await server.cli('HLEN', 'pres1:presence:{team}'))).toBe(6);
  });

  it('sends exactly one left for a member that leaves and one that closes, on the other relay too', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'pres2' }));
    const [watchA, watchB] = [await clients.connect(a), await clients.connect(b)];
    await joinAcked([watchA, watchB], 'desk', { presence: true });
    const [leaver, closer] = [await clients.connect(b), await clients.connect(a)];
    await joinAcked([leaver, closer], 'desk');
    await leaver.request({ type: 'leave', room: 'desk', id: 'l' });
    await closer.close();
    const gone = connectionIds([leaver, closer]);
    for (const w of [watchA, watchB]) await waitUntil(() => eventsOf(w, 'left', 'desk').length >= 2, 5000, 'both left events');
    // A marker after both: its joined comes after any duplicate left the removals could have published.
    const marker = await clients.connect(a);
    await joinAcked([marker], 'desk');
    for (const w of [watchA, watchB]) {
      await w.waitFor((f) => f.type === 'joined' && (f.member as { connectionId: string }).connectionId === marker.welcome.connectionId);
      expect(eventsOf(w, 'left', 'desk').sort()).toEqual(gone);
    }
    expect((await watchA.request({ type: 'presence', room: 'desk', id: 'p' })).count).toBe(3);
  });

  it('removes the members of a SIGKILLed relay within RELAY_PRESENCE_TTL_MS, with one left each, seen on the survivor', async () => {
    const server = await redis.start();
    const [doomed, survivor] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'pres3', RELAY_PRESENCE_TTL_MS: String(TTL_MS) }));
    const watchers = await clients.connectMany(survivor, 2);
    await joinAcked(watchers, 'ops', { presence: true });
    const lost = await clients.connectMany(doomed, 4);
    await joinAcked(lost, 'ops');
    for (const w of watchers) await waitUntil(() => eventsOf(w, 'joined', 'ops').length === 6, 5000, 'every joined');

    doomed.signal('SIGKILL');
    const killed = Date.now();
    await doomed.waitExit(10_000);
    const isLeftOf = (c: TestClient) => (f: Frame) => f.type === 'left' && (f.member as { connectionId: string }).connectionId === c.welcome.connectionId;
    const leftAt = await Promise.all(watchers.flatMap((w) => lost.map((c) => w.waitFor(isLeftOf(c), TTL_MS * 3).then(() => Date.now()))));
    expect(Math.max(...leftAt) - killed).toBeLessThanOrEqual(TTL_MS);
    const reply = await watchers[0].request({ type: 'presence', room: 'ops', id: 'p' });
    expect(reply.count).toBe(2);
    expect(memberIds(reply)).toEqual(connectionIds(watchers));
    // Two more prune rounds (a tick is a fifth of the TTL) would have published any second left.
    const settled = Date.now() + (TTL_MS * 2) / 5;
    await waitUntil(() => Date.now() > settled, TTL_MS, 'two more prune rounds');
    for (const w of watchers) expect(eventsOf(w, 'left', 'ops').sort()).toEqual(connectionIds(lost));
    expect(Number(await server.cli('ZCARD', 'pres3:presence-expiry:{ops}'))).toBe(2);
  });

  it('lists at most RELAY_PRESENCE_LIST_MAX members with the exact count, and refuses presence when RELAY_PRESENCE=off', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'pres4', RELAY_PRESENCE_LIST_MAX: '3' }));
    const members = [...(await clients.connectMany(a, 4)), ...(await clients.connectMany(b, 4))];
    await joinAcked(members, 'crowd');
    const reply = await members[0].request({ type: 'presence', room: 'crowd', id: 'p' });
    expect(reply.count).toBe(8);
    expect(reply.members).toHaveLength(3);

    const off = await relays.start(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'pres4', RELAY_PRESENCE: 'off' }));
    const c = await clients.connect(off);
    await joinAcked([c], 'crowd');
    expect(await c.request({ type: 'presence', room: 'crowd', id: 'q' })).toMatchObject({ type: 'error', id: 'q', code: 'presence_disabled' });
    // Its members are not recorded: the count on the other relays is unchanged.
    expect((await members[0].request({ type: 'presence', room: 'crowd', id: 'p2' })).count).toBe(8);
  });
});

describe('presence only for rooms somebody asked about', () => {
  /** Client commands on the room's presence keys (enter, leave, prune, list, marker), script calls counted once. */
  const presenceCommands = (room: string) => new RegExp(`presence[a-z-]*:\\{${room}\\}"`);

  it('sends no presence command for a room nobody asked about beyond one marker read per relay, unlike a tracked room', async () => {
    const server = await redis.start();
    const monitor = clients.track(await monitorRedis(server));
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'lazy1', RELAY_PRESENCE_TTL_MS: '1000' }));
    const quiet = [...(await clients.connectMany(a, 3)), ...(await clients.connectMany(b, 3))];
    const asked = [...(await clients.connectMany(a, 2)), ...(await clients.connectMany(b, 2))];
    await Promise.all([joinAcked(quiet, 'quiet'), joinAcked(asked, 'asked')]);
    expect((await asked[0].request({ type: 'presence', room: 'asked', id: 'p' })).count).toBe(4);
    // Leaves and closes in both rooms; each relay keeps members in both.
    await Promise.all([quiet[0].request({ type: 'leave', room: 'quiet', id: 'l' }), asked[0].request({ type: 'leave', room: 'asked', id: 'l' })]);
    await Promise.all([quiet[5].close(), asked[3].close()]);
    const askedBefore = monitor.count(presenceCommands('asked'));
    // Three refresh ticks of both relays (a tick is a fifth of the TTL) in the tracked room.
    await waitUntil(() => monitor.count(presenceCommands('asked')) >= askedBefore + 6, 5000, 'three refresh rounds of the tracked room');

    // The first join on each relay read the marker (one enter call, which stored nothing); nothing else touched the room.
    const quietCommands = monitor.commands.filter((c) => presenceCommands('quiet').test(c));
    expect(quietCommands).toHaveLength(2);
    for (const c of quietCommands) expect(c).toContain('"EVALSHA"');
    expect((await server.cli('KEYS', 'lazy1:presence*{quiet}')).trim()).toBe('');
    expect(Number(await server.cli('HLEN', 'lazy1:presence:{asked}'))).toBe(2);
  });

  it('tracks a room from a presence frame alone and lists the members of both relays that joined before', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'lazy2' }));
    const members = [...(await clients.connectMany(a, 2)), ...(await clients.connectMany(b, 2))];
    await joinAcked(members, 'board');
    expect(Number(await server.cli('EXISTS', 'lazy2:presence:{board}', 'lazy2:presence-tracked:{board}'))).toBe(0);

    const reply = await members[3].request({ type: 'presence', room: 'board', id: 'p' });
    expect(reply).toMatchObject({ type: 'presence', room: 'board', count: 4 });
    expect(memberIds(reply)).toEqual(connectionIds(members));
    expect((await server.cli('GET', 'lazy2:presence-tracked:{board}')).trim()).toBe('ready');
    expect(Number(await server.cli('HLEN', 'lazy2:presence:{board}'))).toBe(4);
    // Nobody watches, so nobody was sent an event.
    for (const m of members) expect(m.frames.filter((f) => f.type === 'joined' || f.type === 'left')).toEqual([]);
  });

  it('lists the member of a relay whose first member of the room joins after tracking started, once its join is acked', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'lazy3' }));
    const [asker, watcher] = await clients.connectMany(a, 2);
    await joinAcked([asker], 'late');
    expect((await asker.request({ type: 'presence', room: 'late', id: 'p1' })).count).toBe(1);
    await joinAcked([watcher], 'late', { presence: true });

    const [first, second] = await clients.connectMany(b, 2);
    await joinAcked([first], 'late');
    const reply = await asker.request({ type: 'presence', room: 'late', id: 'p2' });
    expect(reply.count).toBe(3);
    expect(memberIds(reply)).toEqual(connectionIds([asker, watcher, first]));
    await joinAcked([second], 'late');
    expect(memberIds(await asker.request({ type: 'presence', room: 'late', id: 'p3' }))).toEqual(connectionIds([asker, watcher, first, second]));
    await watcher.waitFor((f) => f.type === 'joined' && (f.member as { connectionId: string }).connectionId === second.welcome.connectionId);
    expect(eventsOf(watcher, 'joined', 'late').sort()).toEqual(connectionIds([watcher, first, second]));
  });

  it('stops tracking a room nobody watched or asked about for 2 × RELAY_PRESENCE_TTL_MS, and starts again on the next ask', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'lazy4', RELAY_PRESENCE_TTL_MS: '1000' }));
    const [onA, onB] = [await clients.connect(a), await clients.connect(b)];
    await joinAcked([onA, onB], 'brief');
    expect((await onA.request({ type: 'presence', room: 'brief', id: 'p1' })).count).toBe(2);
    const asked = Date.now();
    // The marker expires 2 s after the ask; the next refresh of each relay finds it gone and removes its entries.
    await waitUntil(async () => Number(await server.cli('EXISTS', 'lazy4:presence:{brief}', 'lazy4:presence-tracked:{brief}')) === 0, 5000, 'the room untracked');
    expect(Date.now() - asked).toBeGreaterThanOrEqual(2000);
    const monitor = clients.track(await monitorRedis(server));
    await onB.request({ type: 'leave', room: 'brief', id: 'l' });
    await joinAcked([onB], 'brief');
    // Neither relay refreshes the room any more and the leave sent nothing; the rejoin (b's first member again) read the marker.
    await monitor.sync();
    expect(monitor.count(presenceCommands('brief'))).toBe(1);
    const reply = await onB.request({ type: 'presence', room: 'brief', id: 'p2' });
    expect(reply.count).toBe(2);
    expect(memberIds(reply)).toEqual(connectionIds([onA, onB]));
  });
});

describe('presence after a relay’s subscription was down', () => {
  const USER = 'relay-b';
  const PASSWORD = 'relay-b-password';
  const backplaneState = async (relay: RelayProcess) => ((await relay.health()).body.backplane as { state: string }).state;

  /** Relay b connects as its own ACL user, so the test can cut b's subscriber alone and keep it out. */
  async function relaysWithSeparateUser(servers: readonly RedisServer[], env: Record<string, string>, url: (auth: string) => string): Promise<[RelayProcess, RelayProcess]> {
    for (const server of servers) await server.cli('ACL', 'SETUSER', USER, 'on', `>${PASSWORD}`, '~*', '&*', '+@all');
    const [a, b] = await Promise.all([relays.start(trustedEnv({ ...env, REDIS_URL: url('') })), relays.start(trustedEnv({ ...env, REDIS_URL: url(`${USER}:${PASSWORD}@`) }))]);
    await Promise.all([a.waitHealthy(), b.waitHealthy()]);
    return [a, b];
  }

  /** Kills b's subscriber connections and refuses b's reconnects until `readmit`; resolves once b reports down. */
  async function cutSubscriber(servers: readonly RedisServer[], b: RelayProcess): Promise<{ readmit: () => Promise<void> }> {
    for (const server of servers) {
      await server.cli('ACL', 'SETUSER', USER, 'off');
      await server.cli('CLIENT', 'KILL', 'TYPE', 'pubsub', 'USER', USER);
    }
    await waitUntil(async () => (await backplaneState(b)) === 'down', 5000, 'relay b to report its backplane down');
    return {
      readmit: async () => {
        for (const server of servers) await server.cli('ACL', 'SETUSER', USER, 'on');
        await waitUntil(async () => (await backplaneState(b)) === 'ready', 10_000, 'relay b to report its backplane ready again');
      },
    };
  }

  it('records the members of a relay that missed the start of tracking, with one marker read per room once it is back', async () => {
    const server = await redis.start();
    const [a, b] = await relaysWithSeparateUser([server], { RELAY_CHANNEL_PREFIX: 'resync1' }, (auth) => `redis://${auth}${server.host}:${server.port}`);
    const [asker, quietOnA] = await clients.connectMany(a, 2);
    const onB = await clients.connectMany(b, 3);
    await Promise.all([joinAcked([asker, onB[0], onB[1]], 'missed'), joinAcked([quietOnA, onB[2]], 'quiet')]);

    const outage = await cutSubscriber([server], b);
    // The start of tracking (marker, `track` over the control channel, gather) happens while b hears nothing.
    const started = await asker.request({ type: 'presence', room: 'missed', id: 'p1' });
    expect(memberIds(started)).toEqual(connectionIds([asker]));
    const monitor = clients.track(await monitorRedis(server));
    await outage.readmit();
    const back = Date.now();

    const everyone = connectionIds([asker, onB[0], onB[1]]);
    let reply: Frame | undefined;
    await waitUntil(
      async () => memberIds((reply = await asker.request({ type: 'presence', room: 'missed', id: 'p2' }))).join() === everyone.join(),
      5000,
      'the presence list on relay a to include relay b’s members',
    );
    expect(Date.now() - back).toBeLessThan(2000);
    expect(reply).toMatchObject({ type: 'presence', room: 'missed', count: 3 });
    // One read of each room's marker by b after the reconnect; nobody asked about `quiet`, so nothing was stored there.
    await monitor.sync();
    const markerReads = (room: string) => monitor.count(new RegExp(`"EXISTS" "resync1:presence-tracked:\\{${room}\\}"`));
    expect([markerReads('missed'), markerReads('quiet')]).toEqual([1, 1]);
    expect((await server.cli('KEYS', 'resync1:presence*{quiet}')).trim()).toBe('');
  });

  it('records the members of a relay that missed the start of tracking in rooms on every shard of a Redis Cluster', async () => {
    const cluster = await redis.cluster(3);
    const prefix = 'cresync';
    const rooms = (await roomsOnDistinctShards(cluster, prefix)).map((r) => r.room);
    const seed = new URL(cluster.url);
    const [a, b] = await relaysWithSeparateUser(cluster.nodes, { REDIS_MODE: 'cluster', RELAY_CHANNEL_PREFIX: prefix }, (auth) => `redis://${auth}${seed.host}`);
    const askers = await clients.connectMany(a, rooms.length);
    const onB = await clients.connectMany(b, rooms.length);
    await Promise.all(rooms.map((room, i) => joinAcked([askers[i], onB[i]], room)));

    const outage = await cutSubscriber(cluster.nodes, b);
    for (const [i, room] of rooms.entries()) {
      expect(memberIds(await askers[i].request({ type: 'presence', room, id: 'p1' }))).toEqual(connectionIds([askers[i]]));
    }
    await outage.readmit();
    for (const [i, room] of rooms.entries()) {
      const both = connectionIds([askers[i], onB[i]]).join();
      await waitUntil(async () => memberIds(await askers[i].request({ type: 'presence', room, id: 'p2' })).join() === both, 5000, `relay b’s member of ${room} listed`);
    }
  });
});

describe('presence on a Redis Cluster', () => {
  it('keeps each room’s presence on the shard that owns it and delivers its events from there', async () => {
    const cluster = await redis.cluster(3);
    const prefix = 'cpres';
    const rooms = await roomsOnDistinctShards(cluster, prefix);
    const [a, b] = await relays.pair(trustedEnv({ REDIS_URL: cluster.url, REDIS_MODE: 'cluster', RELAY_CHANNEL_PREFIX: prefix }));
    for (const { room, owner } of rooms) {
      const watcher = await clients.connect(a);
      await joinAcked([watcher], room, { presence: true });
      const members = [await clients.connect(a), await clients.connect(b)];
      await joinAcked(members, room);
      const reply = await members[1].request({ type: 'presence', room, id: 'p' });
      expect(reply.count).toBe(3);
      expect(memberIds(reply)).toEqual(connectionIds([watcher, ...members]));
      expect(Number(await owner.cli('HLEN', `${prefix}:presence:{${room}}`))).toBe(3);
      for (const other of cluster.nodes.filter((n) => n !== owner)) {
        // KEYS answers on any node (no MOVED): only the owner holds the room's presence.
        expect((await other.cli('KEYS', `${prefix}:presence*{${room}}`)).trim()).toBe('');
      }
      await members[1].close();
      await watcher.waitFor((f) => f.type === 'left' && (f.member as { connectionId: string }).connectionId === members[1].welcome.connectionId);
      expect(eventsOf(watcher, 'joined', room).sort()).toEqual(connectionIds([watcher, ...members]));
    }
  });
});

describe('presence in the server API', () => {
  it('lists the members of every relay with their token users on GET /api/rooms/<room>?members=1', async () => {
    const server = await redis.start();
    const env = { REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'pres5', RELAY_API_KEY: API_KEY, RELAY_TOKEN_SECRET: SECRET };
    const [a, b] = await relays.pair(trustedEnv(env));
    const alice = await clients.connect(`${a.wsUrl}?token=${token('alice')}`);
    const bob = await clients.connect(`${b.wsUrl}?token=${token('bob')}`);
    await joinAcked([alice, bob], 'orders');

    const info = await callApi(a, '/api/rooms/orders?members=1');
    expect(info.status).toBe(200);
    const presence = (info.body as { presence: { count: number; members: Array<{ user: string; instanceId: string }> } }).presence;
    expect(presence.count).toBe(2);
    expect(presence.members.map((m) => [m.user, m.instanceId]).sort()).toEqual([
      ['alice', alice.welcome.instanceId],
      ['bob', bob.welcome.instanceId],
    ]);
    expect((await callApi(a, '/api/rooms/orders')).body).not.toHaveProperty('presence');
    const bad = await callApi(a, '/api/rooms/orders?members=yes');
    expect(bad.status).toBe(400);
    expect(errorCode(bad)).toBe('bad_frame');

    const off = await relays.start(trustedEnv({ ...env, RELAY_PRESENCE: 'off' }));
    const refused = await callApi(off, '/api/rooms/orders?members=1');
    expect(refused.status).toBe(400);
    expect(errorCode(refused)).toBe('presence_disabled');
  });
});
