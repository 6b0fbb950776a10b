/**
 * Failover without closed connections: the replica is promoted (REPLICAOF NO ONE) and the old primary demoted
 * (REPLICAOF <new primary>) while both relays stay connected to the old primary. Within 5 s both relays must
 * publish to and subscribe on the new primary, and a message published afterwards must reach every client.
 */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { joinAll, trustedEnv, watchCloses } from '../helpers/load';
import { waitUntil } from '../helpers/redis-server';

jest.setTimeout(90_000);

const FAILOVER_BOUND_MS = 5_000;
const PREFIX = 'failover';
const ROOM = 'f';
const CHANNEL = `${PREFIX}:room:{${ROOM}}`;

const redisServers = useRedis();
const relayFixture = useRelays();
const clientFixture = useClients();

/** Subscribers of one channel on a node (PUBSUB NUMSUB). */
async function numsub(cli: (...args: string[]) => Promise<string>, channel: string): Promise<number> {
  const out = (await cli('PUBSUB', 'NUMSUB', channel)).trim().split('\n');
  return Number(out[1]);
}

describe('Redis failover by REPLICAOF', () => {
  it('moves both relays to the promoted replica within 5 s and delivers to every client afterwards', async () => {
    const primary = await redisServers.start();
    const replica = await redisServers.start({ args: ['--replicaof', primary.host, String(primary.port)] });
    await waitUntil(async () => (await replica.cli('INFO', 'replication')).includes('master_link_status:up'), 15_000,
      'the replica to sync with the primary');

    const relays = await relayFixture.pair(trustedEnv({ REDIS_URL: primary.url, RELAY_CHANNEL_PREFIX: PREFIX }));
    const [on1, on2] = await Promise.all(relays.map((r) => clientFixture.connectMany(r, 10)));
    const clients = [...on1, ...on2];
    await joinAll([...on1, ...on2], ROOM);
    const watcher = watchCloses(clients);
    expect(await numsub((...a) => primary.cli(...a), CHANNEL)).toBe(2);

    const promotedAt = Date.now();
    await replica.cli('REPLICAOF', 'NO', 'ONE');
    await primary.cli('REPLICAOF', replica.host, String(replica.port));

    await waitUntil(
      async () => {
        if ((await numsub((...a) => replica.cli(...a), CHANNEL)) !== 2) return false;
        // Each relay holds a publisher and a subscriber connection on the new primary.
        const list = (await replica.cli('CLIENT', 'LIST')).split('\n').filter((l) => l.includes('cmd=') && !l.includes('cmd=client'));
        const subscribers = list.filter((l) => /\bsub=[1-9]/.test(l)).length;
        const publishers = list.filter((l) => /\bsub=0\b/.test(l) && !/flags=[^ ]*S/.test(l)).length;
        const healthy = await Promise.all(relays.map(async (r) => (await r.health()).status === 200));
        return subscribers >= 2 && publishers >= 2 && healthy.every(Boolean);
      },
      FAILOVER_BOUND_MS * 3,
      'both relays to subscribe on and publish to the new primary',
    );
    const movedAfterMs = Date.now() - promotedAt;
    process.stdout.write(`failover: both relays on the new primary ${movedAfterMs} ms after promotion\n`);
    expect(movedAfterMs).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
    // The demoted node keeps no relay subscription: the relays left it.
    expect(await numsub((...a) => primary.cli(...a), CHANNEL)).toBe(0);

    // Publishes from either side reach every client on both relays through the new primary.
    on1[0].send({ type: 'publish', room: ROOM, data: 'after-failover-1', id: 'a1' });
    on2[0].send({ type: 'publish', room: ROOM, data: 'after-failover-2', id: 'a2' });
    await Promise.all(clients.map((c) => c.waitFor((f) => f.data === 'after-failover-1', 10_000)));
    await Promise.all(clients.map((c) => c.waitFor((f) => f.data === 'after-failover-2', 10_000)));
    expect(await on1[0].waitFor((f) => f.id === 'a1')).toMatchObject({ type: 'ack', id: 'a1' });
    expect(await on2[0].waitFor((f) => f.id === 'a2')).toMatchObject({ type: 'ack', id: 'a2' });
    expect(watcher.closes).toEqual([]);
    for (const r of relays) expect(r.proc.exitCode).toBeNull();
  });
});
