/**
 * The cluster transport of the Redis backplane: Redis Cluster (ElastiCache cluster mode enabled) with sharded
 * pub/sub. SPUBLISH and SSUBSCRIBE keep each room's traffic on the shard that owns its slot instead of flooding
 * every node, as classic PUBLISH does in a cluster. The broadcast channel is one sharded channel too (one slot;
 * acceptable). Everything else (channels, envelopes, history, state) is the shared backplane in redis-backplane.ts.
 */
import { createCluster, type RedisClusterType } from '@redis/client';
import type { Logger } from 'pino';
import { TransportBackplane } from './redis-backplane';
import type { RedisBackplaneOptions, RedisTransport, TransportHost } from './transport';
import { BUFFER_REPLIES } from './history';
import { COMMAND_TIMEOUT_MS, backoffWithJitter, describeError, socketDefaults, withTimeout, type RedisConnectionSettings } from './redis-common';

// node-redis's defaults: no modules, functions, scripts or type mapping; RESP3.
type Cluster = RedisClusterType;

/** Pause before a failed resync (SCRIPT LOAD, SSUBSCRIBE) is tried again, rather than a tight loop against a refusing node. */
const SYNC_RETRY_MS = 1000;

/**
 * The Redis backplane over Redis Cluster (kind 'cluster'). Start-up and subscriptions behave as in RedisBackplane:
 * `start()` resolves on the first `ready`, never rejects because the cluster is unreachable (topology discovery is
 * retried with backoff), and rejects only if `close()` runs first.
 */
export class ClusterBackplane extends TransportBackplane {
  constructor(opts: RedisBackplaneOptions) {
    super(opts, (settings, logger) => new ClusterTransport(settings, logger), { redisMode: 'cluster' });
  }
}

/** A node-redis cluster client; every command is routed by its key's slot, every channel by its own. */
export class ClusterTransport implements RedisTransport {
  readonly kind = 'cluster' as const;
  readonly store = 'the redis cluster';
  readonly publishCommand = 'SPUBLISH' as const;
  readonly #settings: RedisConnectionSettings;
  readonly #logger: Logger;
  #host: TransportHost | undefined;
  #cluster: Cluster | undefined;
  #connected = false;
  /** Node connections (keyed by node-redis's per-client info object) that are currently not ready. */
  readonly #downNodes = new Set<object>();
  #synced = false;
  #syncing = false;
  #ready = false;
  #syncRetryTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempts = 0;
  #closed = false;

  constructor(settings: RedisConnectionSettings, logger: Logger) {
    this.#settings = settings;
    this.#logger = logger;
  }

  start(host: TransportHost): void {
    if (this.#host !== undefined || this.#closed) return;
    this.#host = host;
    void this.#connect();
  }

  send(key: string, args: Array<string | Buffer>): Promise<unknown> {
    const cluster = this.#cluster;
    if (cluster === undefined) return Promise.reject(new Error('not connected'));
    return cluster.sendCommand(key, false, args, BUFFER_REPLIES);
  }

  publish(channel: string, message: Buffer): Promise<unknown> {
    const cluster = this.#cluster;
    if (cluster === undefined) return Promise.reject(new Error('not connected'));
    return cluster.sPublish(channel, message);
  }

  async subscribe(channel: string): Promise<void> {
    const cluster = this.#cluster;
    const host = this.#host;
    if (cluster === undefined || host === undefined || !this.#ready) return;
    try {
      await withTimeout(cluster.sSubscribe(channel, host.onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('SSUBSCRIBE timed out'));
    } catch (err) {
      // Still recorded by the backplane: the next resync subscribes it.
      this.#synced = false;
      throw err;
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    const cluster = this.#cluster;
    const host = this.#host;
    if (cluster === undefined || host === undefined || !this.#connected) return;
    await cluster.sUnsubscribe(channel, host.onMessage, true);
  }

  close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#syncRetryTimer !== undefined) clearTimeout(this.#syncRetryTimer);
    this.#syncRetryTimer = undefined;
    const cluster = this.#cluster;
    this.#cluster = undefined;
    return closeCluster(cluster, this.#connected);
  }

  /** Discovers the topology; node-redis gives up after one pass over the seed nodes, so we retry with backoff. */
  async #connect(): Promise<void> {
    const host = this.#host;
    if (this.#closed || host === undefined) return;
    const { endpoint } = this.#settings;
    const cluster: Cluster = createCluster({
      rootNodes: [{ socket: { host: endpoint.host, port: endpoint.port } }],
      // Every node connection (discovered ones included) takes TLS, AUTH and backoff from here.
      defaults: {
        socket: socketDefaults(this.#settings),
        username: endpoint.username,
        password: endpoint.password,
        disableOfflineQueue: true,
      },
    });
    this.#cluster = cluster;
    cluster.on('error', (err: unknown) => {
      if (this.#cluster === cluster) host.noteError(err);
    });
    cluster.on('node-error', (err: unknown, node: object) => {
      if (this.#cluster !== cluster) return;
      host.noteError(err);
      this.#nodeDown(node);
    });
    cluster.on('node-reconnecting', (node: object) => {
      if (this.#cluster === cluster) this.#nodeDown(node);
    });
    cluster.on('node-ready', (node: object) => {
      if (this.#cluster !== cluster) return;
      this.#downNodes.delete(node);
      this.#recompute();
    });
    cluster.on('node-disconnect', (node: object) => {
      if (this.#cluster !== cluster) return;
      this.#downNodes.delete(node);
      this.#recompute();
    });
    try {
      await cluster.connect();
    } catch (err) {
      if (this.#cluster !== cluster) return;
      host.noteError(err);
      this.#cluster = undefined;
      cluster.destroy();
      if (this.#closed) return;
      this.#retryTimer = setTimeout(() => void this.#connect(), backoffWithJitter(this.#attempts++));
      return;
    }
    if (this.#cluster !== cluster || this.#closed) return;
    this.#attempts = 0;
    this.#connected = true;
    this.#recompute();
  }

  #nodeDown(node: object): void {
    this.#downNodes.add(node);
    this.#synced = false;
    this.#recompute();
  }

  /** Prepares every master (scripts) and re-issues SSUBSCRIBE for every wanted channel; node-redis skips the ones it holds. */
  async #sync(): Promise<void> {
    const cluster = this.#cluster;
    const host = this.#host;
    if (cluster === undefined || host === undefined || this.#syncing) return;
    this.#syncing = true;
    try {
      // Every master is prepared before the backplane reports ready; see loadScripts for why.
      await Promise.all(
        cluster.masters.map(async (master) => {
          const node = await cluster.nodeClient(master);
          try {
            await host.prepareNode((a) => node.sendCommand(a, BUFFER_REPLIES));
          } catch (err) {
            throw new Error(`preparing ${master.address} failed (${describeError(err)})`, { cause: err });
          }
        }),
      );
      await Promise.all(
        host.wantedChannels().map((channel) =>
          withTimeout(cluster.sSubscribe(channel, host.onMessage, true), COMMAND_TIMEOUT_MS, () => new Error(`SSUBSCRIBE ${channel} timed out`)),
        ),
      );
      if (this.#cluster !== cluster) return;
      this.#synced = true;
    } catch (err) {
      if (this.#cluster !== cluster) return;
      host.noteError(err);
      this.#logger.debug({ error: describeError(err) }, 'cluster resync failed; retrying');
      this.#syncRetryTimer = setTimeout(() => {
        this.#syncRetryTimer = undefined;
        this.#recompute();
      }, SYNC_RETRY_MS);
    } finally {
      this.#syncing = false;
    }
    this.#recompute();
  }

  #recompute(): void {
    if (this.#closed) return;
    const healthy = this.#connected && this.#downNodes.size === 0;
    if (healthy && !this.#synced && !this.#syncing && this.#syncRetryTimer === undefined) void this.#sync();
    this.#ready = healthy && this.#synced;
    this.#host?.setReady(this.#ready);
  }
}

/** Graceful close with a bound; falls back to destroying every connection. Never throws. */
async function closeCluster(cluster: Cluster | undefined, connected: boolean): Promise<void> {
  if (cluster === undefined) return;
  try {
    if (connected) await withTimeout(cluster.close(), COMMAND_TIMEOUT_MS, () => new Error('close timed out'));
    else cluster.destroy();
  } catch {
    cluster.destroy();
  }
}
