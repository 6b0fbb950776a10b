/**
 * Suite fixtures: useRedis(), useRelays() and useClients() start what a suite needs and stop it themselves, so no
 * suite writes its own teardown. Call them at the top of a file or describe block:
 *
 *   const redis = useRedis();
 *   const relays = useRelays();
 *   const clients = useClients();
 *
 * What a test (or a beforeEach) starts is stopped after that test. With `{ per: 'block' }`, what a beforeAll starts
 * is stopped after the block's last test. Teardown goes in dependency order whatever order the fixtures were declared
 * in: clients first, then relays, then Redis.
 */
import { startRedis, startRedisCluster, requireRedisServer, type RedisCluster, type RedisServer, type StartRedisOptions } from './redis-server';
import { startRelay, type RelayProcess } from './relay-process';
import { TestClient } from './ws-client';

/** 'test': stopped after each test (afterEach). 'block': stopped after the block's last test (afterAll). */
export type Lifetime = 'test' | 'block';

export interface FixtureOptions {
  /** @default 'test' */
  readonly per?: Lifetime;
}

/** Teardown order: clients before the relays they talk to, relays before the Redis they use. */
const LAYERS = ['clients', 'relays', 'redis'] as const;
type Layer = (typeof LAYERS)[number];

interface Entry {
  readonly layer: Layer;
  readonly owner: object;
  readonly stop: () => unknown;
}

const perTest: Entry[] = [];
const perBlock: Entry[] = [];
/** Clients closed at a time: thousands at once would only queue in the event loop. */
const CLOSE_CONCURRENCY = 100;

/** Stops entries layer by layer; every entry gets its turn even when another fails, then the first failure is thrown. */
async function teardown(entries: Entry[]): Promise<void> {
  const failures: unknown[] = [];
  for (const layer of LAYERS) {
    const inLayer = entries.filter((e) => e.layer === layer);
    for (let start = 0; start < inLayer.length; start += CLOSE_CONCURRENCY) {
      const results = await Promise.allSettled(inLayer.slice(start, start + CLOSE_CONCURRENCY).map((e) => Promise.resolve().then(e.stop)));
      for (const r of results) if (r.status === 'rejected') failures.push(r.reason);
    }
  }
  if (failures.length > 0) throw failures[0];
}

/** Registers the hooks of one fixture and returns how it records what it starts. */
function lifetime(layer: Layer, opts: FixtureOptions): (stop: () => unknown) => void {
  const owner = {};
  if ((opts.per ?? 'test') === 'test') {
    // Every per-test fixture tears down everything: the first afterEach to run does the work in layer order.
    afterEach(() => teardown(perTest.splice(0)));
    return (stop) => perTest.push({ layer, owner, stop });
  }
  // A block tears down what it started (its own entries and everything started since its beforeAll), not what an
  // enclosing block started before it.
  let mark = 0;
  beforeAll(() => {
    mark = perBlock.length;
  });
  afterAll(() => {
    const mine = perBlock.filter((e, i) => i >= mark || e.owner === owner);
    for (const e of mine) perBlock.splice(perBlock.indexOf(e), 1);
    return teardown(mine);
  });
  return (stop) => perBlock.push({ layer, owner, stop });
}

export interface RedisFixture {
  /** A redis-server on a free loopback port (see startRedis for TLS and password). */
  start(opts?: StartRedisOptions): Promise<RedisServer>;
  /** A Redis Cluster of `masters` nodes, every slot assigned. */
  cluster(masters?: number): Promise<RedisCluster>;
}

/** redis-server processes for a suite; the suite fails up front with an install hint when redis-server is missing. */
export function useRedis(opts: FixtureOptions = {}): RedisFixture {
  beforeAll(() => requireRedisServer());
  const track = lifetime('redis', opts);
  return {
    async start(startOpts) {
      const server = await startRedis(startOpts);
      track(() => server.stop());
      return server;
    },
    async cluster(masters) {
      const cluster = await startRedisCluster(masters);
      track(() => cluster.stop());
      return cluster;
    },
  };
}

export interface RelayFixture {
  /** One bundled relay process (see startRelay). */
  start(env?: Record<string, string>): Promise<RelayProcess>;
  /** Two relays with the same environment (two instances behind one load balancer), both answering /healthz with 200. */
  pair(env: Record<string, string>): Promise<[RelayProcess, RelayProcess]>;
}

const HEALTHY_TIMEOUT_MS = 20_000;

/** Bundled relay processes for a suite. */
export function useRelays(opts: FixtureOptions = {}): RelayFixture {
  const track = lifetime('relays', opts);
  const start = async (env: Record<string, string> = {}): Promise<RelayProcess> => {
    const relay = await startRelay(env);
    track(() => relay.stop());
    return relay;
  };
  return {
    start,
    async pair(env) {
      // Settled, not raced: when one fails to start, the other is stopped before the test goes on to its teardown.
      const started = await Promise.allSettled([start(env), start(env)]);
      const failed = started.find((r) => r.status === 'rejected');
      if (failed) {
        await Promise.all(started.flatMap((r) => (r.status === 'fulfilled' ? [r.value.stop()] : [])));
        throw failed.reason;
      }
      const relays = started.map((r) => (r as PromiseFulfilledResult<RelayProcess>).value);
      await Promise.all(relays.map((r) => r.waitHealthy(HEALTHY_TIMEOUT_MS)));
      return [relays[0], relays[1]];
    },
  };
}

/** Anything with a close(): TestClient, RelayClient, recovery clients, or a wrapper around a raw socket. */
export interface Closable {
  close(): unknown;
}

export interface ClientFixture {
  /** A TestClient connected to a relay (or a ws:// URL), welcome received. */
  connect(target: RelayProcess | string, opts?: Parameters<typeof TestClient.connect>[1]): Promise<TestClient>;
  /** `count` TestClients, opened in bounded batches. */
  connectMany(target: RelayProcess | string, count: number): Promise<TestClient[]>;
  /** Closes `client` at teardown, before any relay stops. */
  track<T extends Closable>(client: T): T;
}

const CONNECT_CONCURRENCY = 50;

/** WebSocket clients for a suite, closed before the relays stop. */
export function useClients(opts: FixtureOptions = {}): ClientFixture {
  const track = lifetime('clients', opts);
  const urlOf = (target: RelayProcess | string): string => (typeof target === 'string' ? target : target.wsUrl);
  const fixture: ClientFixture = {
    async connect(target, connectOpts) {
      return fixture.track(await TestClient.connect(urlOf(target), connectOpts));
    },
    async connectMany(target, count) {
      const clients: TestClient[] = [];
      for (let start = 0; start < count; start += CONNECT_CONCURRENCY) {
        const batch = Math.min(CONNECT_CONCURRENCY, count - start);
        clients.push(...(await Promise.all(Array.from({ length: batch }, () => fixture.connect(target)))));
      }
      return clients;
    },
    track(client) {
      track(() => client.close());
      return client;
    },
  };
  return fixture;
}
