import { expect } from '@jest/globals';
import pino from 'pino';
import { ClusterBackplane } from '../../service/backplane/cluster';
import { script } from '../../service/backplane/history';
import { BackplaneUnavailableError, extraChannel, roomChannel, roomExtraChannel, roomKey } from '../../service/backplane/types';
import { freePort } from '../../app/free-port';
import { observe } from '../helpers/backplane-observer';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { roomsOnDistinctShards, waitClusterOk, waitUntil, type RedisCluster, type RedisServer } from '../helpers/redis-server';

const logger = pino({ level: 'silent' });
const PREFIX = 'ctest';
const redis = useRedis({ per: 'block' });
const relayFixture = useRelays();
const clients = useClients();

function backplane(url: string, instanceId: string): ClusterBackplane {
  return clients.track(new ClusterBackplane({ url, instanceId, channelPrefix: PREFIX, logger }));
}

const shardChannels = async (node: RedisServer) => (await node.cli('PUBSUB', 'SHARDCHANNELS', `${PREFIX}:*`)).split('\n').filter(Boolean).sort();

let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await redis.cluster(3);
}, 60_000);

describe('ClusterBackplane against a 3-master Redis Cluster', () => {
  it('delivers with sharded pub/sub on the shard that owns each room', async () => {
    const rooms = await roomsOnDistinctShards(cluster, PREFIX);
    expect(rooms).toHaveLength(3);
    const a = backplane(cluster.url, 'a');
    const b = backplane(cluster.url, 'b');
    const seenA = observe(a);
    const seenB = observe(b);
    await Promise.all([a.start(), b.start()]);
    expect(a.status()).toEqual({ kind: 'cluster', state: 'ready' });
    for (const { room } of rooms) await b.subscribe(room);

    for (const { room, owner } of rooms) {
      // Only the owning shard holds the channel: sharded pub/sub does not flood the cluster.
      expect(await shardChannels(owner)).toContain(roomChannel(PREFIX, room));
      for (const other of cluster.nodes.filter((n) => n !== owner)) {
        expect(await shardChannels(other)).not.toContain(roomChannel(PREFIX, room));
      }
      expect((await owner.cli('PUBSUB', 'CHANNELS', `${PREFIX}:*`)).trim()).toBe('');
    }

    for (const { room } of rooms) await a.publish(room, Buffer.from(`to-${room}`));
    await a.publish(null, Buffer.from('to-all'));
    await seenB.waitFrames(4);
    // Different shards are different connections: order holds per room, not across rooms.
    const byText = (x: { text: string }, y: { text: string }) => x.text.localeCompare(y.text);
    expect([...seenB.frames].sort(byText)).toEqual(
      [...rooms.map(({ room }) => ({ target: room, text: `to-${room}` })), { target: null, text: 'to-all' }].sort(byText),
    );
    // a heard nothing: its own broadcast came back from Redis and was dropped.
    await b.publish(null, Buffer.from('from-b'));
    await seenA.waitFrames(1);
    expect(seenA.frames).toEqual([{ target: null, text: 'from-b' }]);

    await b.unsubscribe(rooms[0].room);
    expect(await shardChannels(rooms[0].owner)).not.toContain(roomChannel(PREFIX, rooms[0].room));
  });

  it('goes down when a shard dies and resubscribes when it comes back', async () => {
    const rooms = await roomsOnDistinctShards(cluster, PREFIX);
    const { room, owner } = rooms[1];
    const a = backplane(cluster.url, 'a');
    const b = backplane(cluster.url, 'b');
    const seenB = observe(b);
    await Promise.all([a.start(), b.start()]);
    await b.subscribe(room);
    await a.publish(room, Buffer.from('before'));
    await seenB.waitFrames(1);

    await owner.kill('SIGKILL');
    await waitUntil(() => b.status().state === 'down', 10_000, 'b to notice the dead shard');
    expect(b.status().lastError).toEqual(expect.any(String));
    await owner.restart();
    await waitUntil(() => b.status().state === 'ready', 20_000, `b to be ready again (is ${JSON.stringify(b.status())})`);
    await waitUntil(async () => (await shardChannels(owner)).includes(roomChannel(PREFIX, room)), 10_000, 'the resubscribe');
    await waitUntil(() => a.status().state === 'ready', 20_000, 'a to be ready again');
    await waitUntil(async () => {
      await a.publish(room, Buffer.from('after')).catch((err: unknown) => {
        if (!(err instanceof BackplaneUnavailableError)) throw err;
      });
      return seenB.frames.some((f) => f.text === 'after');
    }, 10_000, 'delivery to resume');
    expect(seenB.states.slice(0, 3)).toEqual(['ready', 'down', 'ready']);
    // The other nodes marked the shard failed; later tests need the whole cluster serving again.
    await waitClusterOk(cluster);
  });
});

describe('ClusterBackplane extension points', () => {
  it('runs a script on the shard that owns the room, and carries extra and per-room channels on their slots', async () => {
    const rooms = await roomsOnDistinctShards(cluster, PREFIX);
    const setter = script("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])");
    const a = backplane(cluster.url, 'a');
    const b = backplane(cluster.url, 'b');
    a.registerScript(setter);
    await Promise.all([a.start(), b.start()]);
    for (const node of cluster.nodes) expect((await node.cli('SCRIPT', 'EXISTS', setter.sha)).trim()).toBe('1');
    for (const { room, owner } of rooms) {
      const key = roomKey(PREFIX, 'state', room);
      expect(await a.runScript(setter, [key], [`v-${room}`])).toEqual(Buffer.from(`v-${room}`));
      expect((await owner.cli('GET', key)).trim()).toBe(`v-${room}`);
    }

    const got: string[] = [];
    await b.listen(extraChannel(PREFIX, 'sync'), (m) => got.push(`sync ${m.toString()}`));
    const { room, owner } = rooms[2];
    await b.listen(roomExtraChannel(PREFIX, 'presence', room), (m) => got.push(`presence ${m.toString()}`));
    expect(await shardChannels(owner)).toContain(roomExtraChannel(PREFIX, 'presence', room));
    await a.publishRaw(extraChannel(PREFIX, 'sync'), Buffer.from('hello'));
    await a.publishRaw(roomExtraChannel(PREFIX, 'presence', room), Buffer.from('joined'));
    await waitUntil(() => got.length === 2, 10_000, `both extra channel messages (got ${JSON.stringify(got)})`);
    expect(got.sort()).toEqual(['presence joined', 'sync hello']);
  });
});

describe('ClusterBackplane without a cluster', () => {
  it('keeps retrying discovery, reports why, and closes cleanly', async () => {
    const port = await freePort();
    const a = backplane(`redis://127.0.0.1:${port}`, 'a');
    const started = a.start();
    await waitUntil(() => a.status().lastError !== undefined, 10_000, 'the discovery failure to be recorded');
    expect(a.status()).toMatchObject({ kind: 'cluster', state: 'connecting', lastError: expect.stringMatching(/ECONNREFUSED|root nodes/i) });
    await expect(a.publish('r', Buffer.from('x'))).rejects.toThrow('the message backplane is unavailable; retry shortly');
    await a.subscribe('r');
    await a.close();
    await expect(started).rejects.toThrow('the cluster backplane was closed before it became ready');
    expect(a.status().state).toBe('closed');
  });
});

describe('two relays with REDIS_MODE=cluster', () => {
  it('relays rooms that live on different shards, and broadcasts, between instances', async () => {
    const rooms = await roomsOnDistinctShards(cluster, PREFIX);
    const relays = await relayFixture.pair({ REDIS_URL: cluster.url, REDIS_MODE: 'cluster', RELAY_CHANNEL_PREFIX: PREFIX });
    expect((await relays[0].health()).body).toMatchObject({ status: 'ok', backplane: { kind: 'cluster', state: 'ready' } });
    const sender = await clients.connect(relays[0]);
    const receiver = await clients.connect(relays[1]);
    for (const { room } of rooms) {
      expect(await receiver.request({ type: 'join', room, id: room })).toEqual({ type: 'ack', id: room, position: { seq: '0', epoch: expect.any(String) } });
    }
    for (const { room } of rooms) sender.send({ type: 'publish', room, data: `to-${room}` });
    sender.send({ type: 'publish', data: 'to-all' });
    const got = await receiver.waitForMessages(rooms.length + 1, 15_000);
    // Different shards are different connections: order holds per room, not across rooms.
    const byData = (a: { [k: string]: unknown }, b: { [k: string]: unknown }) => String(a.data).localeCompare(String(b.data));
    expect([...got].sort(byData)).toEqual([
      // History is on by default: the script that stores each message on its room's shard also SPUBLISHes it there.
      ...rooms.map(({ room }) => ({ type: 'message', room, data: `to-${room}`, from: sender.welcome.connectionId, seq: '1', epoch: expect.any(String) })),
      { type: 'message', data: 'to-all', from: sender.welcome.connectionId, seq: expect.stringMatching(/^[0-9]+$/), epoch: expect.any(String) },
    ].sort(byData));
    for (const { room, owner } of rooms) expect(await shardChannels(owner)).toContain(roomChannel(PREFIX, room));
  });
});
