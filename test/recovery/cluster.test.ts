/** Recovery on a 3-master Redis Cluster: each room's history, meta and sharded channel live on the shard that owns it. */
import { roomChannel } from '../../service/backplane/types';
import { startRelay, stopAllRelays, type RelayProcess } from '../helpers/relay-process';
import { TestClient } from '../helpers/ws-client';
import { requireRedisServer, startRedisCluster, stopAllRedis, type RedisCluster, type RedisServer } from '../helpers/redis-server';
import { expectConsecutive, join, lastPosition, publishAll, roomMessages, waitForCondition } from './recovery-helpers';

jest.setTimeout(180_000);

const PREFIX = 'crec';
let cluster: RedisCluster;
const clients: TestClient[] = [];

beforeAll(async () => {
  requireRedisServer();
  cluster = await startRedisCluster(3);
});

afterAll(async () => {
  await stopAllRedis();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await stopAllRelays();
});

async function connect(relay: RelayProcess): Promise<TestClient> {
  const c = await TestClient.connect(relay.wsUrl);
  clients.push(c);
  return c;
}

/** The master whose `myself` line lists a slot range containing `slot`. */
async function ownerOf(slot: number): Promise<RedisServer> {
  for (const node of cluster.nodes) {
    const myself = (await node.cli('CLUSTER', 'NODES')).split('\n').find((line) => line.includes('myself'));
    for (const range of (myself ?? '').trim().split(' ').slice(8)) {
      const [from, to = from] = range.split('-').map(Number);
      if (slot >= from && slot <= to) return node;
    }
  }
  throw new Error(`no node owns slot ${slot}`);
}

/** One room per master. */
async function roomsOnDistinctShards(): Promise<Array<{ room: string; owner: RedisServer }>> {
  const picked = new Map<RedisServer, string>();
  for (let i = 0; i < 200 && picked.size < cluster.nodes.length; i++) {
    const room = `shard-room-${i}`;
    const slot = Number((await cluster.nodes[0].cli('CLUSTER', 'KEYSLOT', roomChannel(PREFIX, room))).trim());
    const owner = await ownerOf(slot);
    if (!picked.has(owner)) picked.set(owner, room);
  }
  if (picked.size < cluster.nodes.length) throw new Error(`found rooms on only ${picked.size} shards`);
  return [...picked].map(([owner, room]) => ({ room, owner }));
}

describe('recovery on a 3-master Redis Cluster', () => {
  it('replays what a client missed in rooms on every shard after it moved to another instance, then continues live', async () => {
    const rooms = await roomsOnDistinctShards();
    const env = { REDIS_URL: cluster.url, REDIS_MODE: 'cluster', RELAY_CHANNEL_PREFIX: PREFIX, RELAY_RATE_LIMIT: '100000', RELAY_RATE_BURST: '100000' };
    const [r1, r2] = await Promise.all([startRelay(env), startRelay(env)]);
    await Promise.all([r1.waitHealthy(20_000), r2.waitHealthy(20_000)]);
    const publisher = await connect(r2);
    const reader = await connect(r1);
    for (const { room } of rooms) await join(reader, room);
    for (const { room } of rooms) await publishAll(publisher, room, [`${room}-first`]);
    await reader.waitForMessages(rooms.length);
    const since = new Map(rooms.map(({ room }) => [room, lastPosition(reader, room)]));
    await reader.close();

    const missed = (room: string) => Array.from({ length: 200 }, (_, i) => `${room}-missed-${i}`);
    await Promise.all(rooms.map(({ room }) => publishAll(publisher, room, missed(room))));

    const back = await connect(r2);
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
      // The room's history and meta keys sit on the shard that owns its channel.
      expect(Number(await owner.cli('XLEN', `${PREFIX}:history:{${room}}`))).toBe(202);
      expect((await owner.cli('HGET', `${PREFIX}:meta:{${room}}`, 'epoch')).trim()).toBe(since.get(room)!.epoch);
    }
  });
});
