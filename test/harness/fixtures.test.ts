/**
 * The suite fixtures stop what they started: per test after each test, per block after the block, and in dependency
 * order (clients, then relays, then Redis) whatever order they were declared in. The tests of each block run in order:
 * a later test checks what the teardown after an earlier one did.
 */
import { expect } from '@jest/globals';
import { jsonLine } from '../../app/processes';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import type { RedisServer } from '../helpers/redis-server';
import type { RelayProcess } from '../helpers/relay-process';
import type { TestClient } from '../helpers/ws-client';

/** The close code the relay logged for a connection (its `connectionId` and `code` fields). */
function loggedCloseCode(relay: RelayProcess, connectionId: unknown): unknown {
  return relay.logs.map(jsonLine).find((r) => r?.connectionId === connectionId && typeof r?.code === 'number')?.code;
}

const exited = (relay: RelayProcess): boolean => relay.proc.exitCode !== null || relay.proc.signalCode !== null;

describe('per-test fixtures, declared in the reverse of their teardown order', () => {
  // Redis first, clients last: teardown must still close clients before relays and relays before Redis.
  const redisServers = useRedis();
  const relays = useRelays();
  const clients = useClients();
  let redis: RedisServer;
  let relay: RelayProcess;
  let client: TestClient;

  it('starts Redis, a relay on it and a client', async () => {
    redis = await redisServers.start();
    relay = await relays.start({ REDIS_URL: redis.url });
    await relay.waitHealthy();
    client = await clients.connect(relay);
    expect(client.welcome.type).toBe('welcome');
  });

  it('stopped all three after the test: the client closed first (1000), while its relay still ran', async () => {
    expect(exited(relay)).toBe(true);
    expect(client.ws.readyState).toBe(client.ws.CLOSED);
    // A relay stopped first would have closed the client with 1001 while draining.
    expect(loggedCloseCode(relay, client.welcome.connectionId)).toBe(1000);
    await expect(redis.cli('PING')).rejects.toThrow();
  });
});

describe('per-block fixtures', () => {
  const relays = useRelays({ per: 'block' });
  let shared: RelayProcess;
  let nested: RelayProcess;

  beforeAll(async () => {
    shared = await relays.start();
  });

  describe('a nested block', () => {
    const inner = useRelays({ per: 'block' });
    beforeAll(async () => {
      nested = await inner.start();
    });

    it('sees both relays running', () => {
      expect(exited(shared)).toBe(false);
      expect(exited(nested)).toBe(false);
    });

    it('keeps both running between its tests', () => {
      expect(exited(shared)).toBe(false);
      expect(exited(nested)).toBe(false);
    });
  });

  it('after the nested block, its relay is stopped and the enclosing block’s relay still runs', async () => {
    expect(exited(nested)).toBe(true);
    expect(exited(shared)).toBe(false);
    expect((await shared.health()).status).toBe(200);
  });
});
