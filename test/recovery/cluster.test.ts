/** Recovery on a 3-master Redis Cluster: each room's history, meta and sharded channel live on the shard that owns it. */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import { roomsOnDistinctShards, type RedisCluster } from '../helpers/redis-server';
import { expectConsecutive, join, streamPosition, lastPosition, publishAll, roomMessages, waitForCondition } from './recovery-helpers';

jest.setTimeout(180_000);

const PREFIX = 'crec';
const redis = useRedis({ per: 'block' });
const relays = useRelays();
const clients = useClients();
let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await redis.cluster(3);
});

describe('recovery on a 3-master Redis Cluster', () => {
  it('replays what a client missed in rooms on every shard after it moved to another instance, then continues live', async () => {
    const rooms = await roomsOnDistinctShards(cluster, PREFIX);
    const [r1, r2] = await relays.pair(trustedEnv({ REDIS_URL: cluster.url, REDIS_MODE: 'cluster', RELAY_CHANNEL_PREFIX: PREFIX }));
    const publisher = await clients.connect(r2);
    const reader = await clients.connect(r1);
    for (const { room } of rooms) await join(reader, room);
    for (const { room } of rooms) await publishAll(publisher, room, [`${room}-first`]);
    await reader.waitForMessages(rooms.length);
    const since = new Map(rooms.map(({ room }) => [room, lastPosition(reader, room)]));
    await reader.close();

    const missed = (room: string) => Array.from({ length: 200 }, (_, i) => `${room}-missed-${i}`);
    await Promise.all(rooms.map(({ room }) => publishAll(publisher, room, missed(room))));

    const back = await clients.connect(r2);
    for (const { room } of rooms) {
      const from = since.get(room)!;
      const ack = await join(back, room, from);
      expect(ack).toEqual({ type: 'ack', id: ack.id, recovered: true, replayed: 200, position: { seq: '201', epoch: from.epoch } });
    }
    for (const { room } of rooms) await publishAll(publisher, room, [`${room}-live`]);
    for (const { room, owner } of rooms) {
      await waitForCondition(back, () => roomMessages(back, room).length >= 201, `201 messages of ${room}`);
      const frames = roomMessages(back, room);
      expect(frames.map((f) => f.data)).toEqual([...missed(room), `${room}-live`]);
      expectConsecutive(frames, 1, since.get(room)!.epoch);
      // The room's history stream sits on the shard that owns its channel; its last id is the room's position.
      expect(Number(await owner.cli('XLEN', `${PREFIX}:history:{${room}}`))).toBe(202);
      expect(streamPosition(await owner.cli('XINFO', 'STREAM', `${PREFIX}:history:{${room}}`))).toEqual({ epoch: since.get(room)!.epoch, seq: '202' });
    }
  });
});
