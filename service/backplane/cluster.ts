import { createCluster, type RedisClusterType } from '@redis/client';
import type { Logger } from 'pino';
import {
  BackplaneUnavailableError,
  broadcastChannel,
  controlChannel,
  decodeEnvelope,
  idempotencyKey,
  encodeEnvelope,
  isOwnEcho,
  roomChannel,
  type Backplane,
  type BackplaneStatus,
  type ControlHandler,
  type FrameHandler,
  type PresenceHandler,
  type PresenceList,
  type PresenceMember,
  type PresenceTiming,
  type Once,
  type OnceAppend,
  type Target,
} from './types';
import { appendOnceWithScript, publishOnceWithScript } from './idempotency';
import { PresenceChannels, RedisPresenceStore, loadPresenceScripts } from './presence-store';
import {
  COMMAND_TIMEOUT_MS,
  PUBLISH_TIMEOUT_MS,
  StateReporter,
  appendWithScript,
  readWithScript,
  backoffWithJitter,
  describeError,
  redactUrl,
  resolveConnectionSettings,
  socketDefaults,
  withTimeout,
  type RedisConnectionSettings,
} from './redis-common';
import type { RedisBackplaneOptions } from './redis';
import {
  BUFFER_REPLIES,
  EpochSource,
  HISTORY_OFF,
  appendArgs,
  historyKeys,
  loadScripts,
  readArgs,
  type HistoryOptions,
  type HistoryPosition,
  type HistoryRead,
  type ReadLimits,
} from './history';

// node-redis's defaults: no modules, functions, scripts or type mapping; RESP3.
type Cluster = RedisClusterType;

/**
 * Backplane over Redis Cluster (ElastiCache cluster mode enabled) with sharded pub/sub: SPUBLISH and
 * SSUBSCRIBE keep each room's traffic on the shard that owns its slot instead of flooding every node, as
 * classic PUBLISH does in a cluster. The broadcast channel is one sharded channel too (one slot; acceptable).
 *
 * Start-up and subscriptions behave as in RedisBackplane: `start()` resolves on the first `ready`, never rejects
 * because the cluster is unreachable (topology discovery is retried with backoff), and rejects only if `close()`
 * runs first. `subscribe`/`unsubscribe` never reject while down; what they record is applied when the cluster is back.
 */
export class ClusterBackplane implements Backplane {
  readonly kind = 'cluster' as const;
  readonly historyEnabled: boolean;
  readonly #opts: RedisBackplaneOptions;
  readonly #history: HistoryOptions;
  readonly #epochs = new EpochSource();
  readonly #settings: RedisConnectionSettings;
  readonly #reporter: StateReporter;
  readonly #logger: Logger;
  readonly #broadcast: string;
  readonly #channels = new Map<string, Target>();
  #handler: FrameHandler | undefined;
  readonly #presenceChannels: PresenceChannels;
  readonly #presence: RedisPresenceStore;
  #controlHandler: ControlHandler | undefined;
  readonly #control: string;

  #cluster: Cluster | undefined;
  #connected = false;
  /** Node connections (keyed by node-redis's per-client info object) that are currently not ready. */
  readonly #downNodes = new Set<object>();
  #synced = false;
  #syncing = false;
  #syncRetryTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempts = 0;
  #started: Promise<void> | undefined;
  #resolveStarted: (() => void) | undefined;
  #rejectStarted: ((err: Error) => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(opts: RedisBackplaneOptions) {
    this.#opts = opts;
    this.#history = opts.history ?? HISTORY_OFF;
    this.historyEnabled = this.#history.size > 0;
    this.#settings = resolveConnectionSettings(opts.url, opts.authToken, opts.tlsCaFile);
    this.#logger = opts.logger.child({ url: redactUrl(opts.url), redisMode: 'cluster' });
    this.#reporter = new StateReporter('cluster', this.#logger);
    this.#broadcast = broadcastChannel(opts.channelPrefix);
    this.#channels.set(this.#broadcast, null);
    this.#presenceChannels = new PresenceChannels(opts.channelPrefix);
    // The keys carry the room's hash tag: each script (and its SPUBLISH) runs on the shard that owns the room.
    this.#presence = new RedisPresenceStore(() => {
      const cluster = this.#cluster;
      return this.#reporter.state === 'ready' && cluster !== undefined ? (key, args) => cluster.sendCommand(key, false, args) : undefined;
    }, opts.channelPrefix, 'SPUBLISH', 'the redis cluster');
    this.#control = controlChannel(opts.channelPrefix);
    // Recorded like the broadcast channel so every (re)subscription includes it; #onMessage routes it first.
    this.#channels.set(this.#control, null);
  }

  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    if (this.#closing !== undefined) return Promise.reject(new BackplaneUnavailableError('the cluster backplane is closed'));
    this.#started = new Promise<void>((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    void this.#connect();
    return this.#started;
  }

  async publish(target: Target, frame: Buffer): Promise<void> {
    const cluster = this.#cluster;
    if (this.#reporter.state !== 'ready' || cluster === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    try {
      // Our own bound: node-redis's command timeout stops counting once the command is written to the socket.
      await withTimeout(cluster.sPublish(channel, encodeEnvelope(this.#opts.instanceId, frame)), PUBLISH_TIMEOUT_MS,
        () => new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`));
    } catch (err) {
      throw new BackplaneUnavailableError(`publishing to the redis cluster failed (${describeError(err)}); retry shortly`);
    }
  }

  async append(target: Target, frame: Buffer): Promise<number> {
    const cluster = this.#cluster;
    if (this.#reporter.state !== 'ready' || cluster === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    // Broadcasts are numbered but not stored: no join can ask for them.
    const stored = target === null ? 0 : this.#history.size;
    const keys = historyKeys(this.#opts.channelPrefix, target);
    const args = appendArgs('SPUBLISH', channel, this.#opts.instanceId, frame, stored, this.#history, this.#epochs.next());
    // The keys carry the channel's hash tag, so the script and its SPUBLISH run on the shard that owns the room.
    return appendWithScript((a) => cluster.sendCommand(keys[0], false, a, BUFFER_REPLIES), 'the redis cluster', keys, args);
  }

  async appendOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<OnceAppend> {
    const cluster = this.#cluster;
    if (this.#reporter.state !== 'ready' || cluster === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    const stored = target === null ? 0 : this.#history.size;
    const keys = historyKeys(this.#opts.channelPrefix, target);
    const args = appendArgs('SPUBLISH', channel, this.#opts.instanceId, frame, stored, this.#history, this.#epochs.next());
    const idem = once === undefined ? undefined : { key: idempotencyKey(this.#opts.channelPrefix, target, once.key), windowMs: once.windowMs };
    return appendOnceWithScript((a) => cluster.sendCommand(keys[0], false, a, BUFFER_REPLIES), 'the redis cluster', keys, args, idem);
  }

  async publishOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<boolean> {
    if (once === undefined) {
      await this.publish(target, frame);
      return true;
    }
    const cluster = this.#cluster;
    if (this.#reporter.state !== 'ready' || cluster === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    const idem = idempotencyKey(this.#opts.channelPrefix, target, once.key);
    return publishOnceWithScript((a) => cluster.sendCommand(idem, false, a, BUFFER_REPLIES), 'the redis cluster', idem, 'SPUBLISH', channel, encodeEnvelope(this.#opts.instanceId, frame), once.windowMs);
  }

  async publishControl(message: Buffer, once?: Once): Promise<boolean> {
    const cluster = this.#cluster;
    if (this.#reporter.state !== 'ready' || cluster === undefined) throw new BackplaneUnavailableError();
    if (once !== undefined) {
      const idem = idempotencyKey(this.#opts.channelPrefix, { control: true }, once.key);
      return publishOnceWithScript((a) => cluster.sendCommand(idem, false, a, BUFFER_REPLIES), 'the redis cluster', idem, 'SPUBLISH', this.#control, message, once.windowMs);
    }
    try {
      await withTimeout(cluster.sendCommand(this.#control, false, ['SPUBLISH', this.#control, message]), PUBLISH_TIMEOUT_MS, () => new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`));
    } catch (err) {
      throw new BackplaneUnavailableError(`publishing to the redis cluster failed (${describeError(err)}); retry shortly`);
    }
    return true;
  }

  onControl(handler: ControlHandler): void {
    this.#controlHandler = handler;
  }

  async readHistory(room: string, since: HistoryPosition | undefined, limits?: ReadLimits): Promise<HistoryRead> {
    const cluster = this.#cluster;
    if (this.#reporter.state !== 'ready' || cluster === undefined) throw new BackplaneUnavailableError();
    const keys = historyKeys(this.#opts.channelPrefix, room);
    const args = readArgs(this.#history, this.#epochs.next(), since, limits);
    return readWithScript((a) => cluster.sendCommand(keys[0], false, a, BUFFER_REPLIES), 'the redis cluster', room, keys, args);
  }

  async subscribe(room: string): Promise<void> {
    const channel = roomChannel(this.#opts.channelPrefix, room);
    if (this.#channels.has(channel)) return;
    this.#channels.set(channel, room);
    const cluster = this.#cluster;
    if (cluster === undefined || this.#reporter.state !== 'ready') return;
    try {
      await withTimeout(cluster.sSubscribe(channel, this.#onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('SSUBSCRIBE timed out'));
    } catch (err) {
      // Still recorded: the next resync after a reconnect subscribes it.
      this.#synced = false;
      this.#logger.debug({ room, error: describeError(err) }, 'ssubscribe deferred until the cluster reconnects');
    }
  }

  async unsubscribe(room: string): Promise<void> {
    const channel = roomChannel(this.#opts.channelPrefix, room);
    if (!this.#channels.delete(channel)) return;
    const cluster = this.#cluster;
    if (cluster === undefined || !this.#connected) return;
    try {
      await withTimeout(cluster.sUnsubscribe(channel, this.#onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('SUNSUBSCRIBE timed out'));
    } catch (err) {
      // Frames on channels we no longer track are dropped on receipt.
      this.#logger.debug({ room, error: describeError(err) }, 'sunsubscribe failed');
    }
  }

  presenceEnter(room: string, members: readonly PresenceMember[], timing: PresenceTiming): Promise<number> {
    return this.#presence.enter(room, members, timing);
  }

  presenceLeave(room: string, connectionIds: readonly string[]): Promise<number> {
    return this.#presence.leave(room, connectionIds);
  }

  presencePrune(room: string): Promise<number> {
    return this.#presence.prune(room);
  }

  async presenceCount(room: string): Promise<number> {
    return (await this.#presence.list(room, 0)).count;
  }

  presenceMembers(room: string, limit: number): Promise<PresenceList> {
    return this.#presence.list(room, limit);
  }

  async watchPresence(room: string): Promise<void> {
    const channel = this.#presenceChannels.add(room);
    const cluster = this.#cluster;
    if (channel === undefined || cluster === undefined || this.#reporter.state !== 'ready') return;
    try {
      await withTimeout(cluster.sSubscribe(channel, this.#presenceChannels.listener, true), COMMAND_TIMEOUT_MS, () => new Error('SSUBSCRIBE timed out'));
    } catch (err) {
      this.#synced = false;
      this.#logger.debug({ room, error: describeError(err) }, 'presence ssubscribe deferred until the cluster reconnects');
    }
  }

  async unwatchPresence(room: string): Promise<void> {
    const channel = this.#presenceChannels.remove(room);
    const cluster = this.#cluster;
    if (channel === undefined || cluster === undefined || !this.#connected) return;
    try {
      await withTimeout(cluster.sUnsubscribe(channel, this.#presenceChannels.listener, true), COMMAND_TIMEOUT_MS, () => new Error('SUNSUBSCRIBE timed out'));
    } catch (err) {
      this.#logger.debug({ room, error: describeError(err) }, 'presence sunsubscribe failed');
    }
  }

  onPresence(handler: PresenceHandler): void {
    this.#presenceChannels.onEvent(handler);
  }

  onFrame(handler: FrameHandler): void {
    this.#handler = handler;
  }

  onStateChange(listener: (status: BackplaneStatus) => void): void {
    this.#reporter.onChange(listener);
  }

  status(): BackplaneStatus {
    return this.#reporter.status();
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#syncRetryTimer !== undefined) clearTimeout(this.#syncRetryTimer);
    this.#syncRetryTimer = undefined;
    this.#reporter.set('closed');
    this.#rejectStarted?.(new BackplaneUnavailableError('the cluster backplane was closed before it became ready'));
    this.#started?.catch(() => undefined);
    const cluster = this.#cluster;
    this.#cluster = undefined;
    this.#closing = closeCluster(cluster, this.#connected);
    return this.#closing;
  }

  readonly #onMessage = (message: Buffer, channel: Buffer): void => {
    const name = channel.toString();
    if (name === this.#control) {
      this.#onControl(message);
      return;
    }
    const target = this.#channels.get(name);
    if (target === undefined || this.#handler === undefined) return;
    const envelope = decodeEnvelope(message);
    if (envelope === null || isOwnEcho(envelope, this.#opts.instanceId)) return;
    try {
      this.#handler(target, envelope.frame, envelope.position);
    } catch (err) {
      this.#logger.error({ err }, 'frame handler threw');
    }
  };

  #onControl(message: Buffer): void {
    try {
      this.#controlHandler?.(message);
    } catch (err) {
      this.#logger.error({ err }, 'control handler threw');
    }
  }

  /** Discovers the topology; node-redis gives up after one pass over the seed nodes, so we retry with backoff. */
  async #connect(): Promise<void> {
    if (this.#closing !== undefined) return;
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
      if (this.#cluster === cluster) this.#reporter.noteError(err);
    });
    cluster.on('node-error', (err: unknown, node: object) => {
      if (this.#cluster !== cluster) return;
      this.#reporter.noteError(err);
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
      this.#reporter.noteError(err);
      this.#cluster = undefined;
      cluster.destroy();
      if (this.#closing !== undefined) return;
      this.#retryTimer = setTimeout(() => void this.#connect(), backoffWithJitter(this.#attempts++));
      return;
    }
    if (this.#cluster !== cluster || this.#closing !== undefined) return;
    this.#attempts = 0;
    this.#connected = true;
    this.#recompute();
  }

  #nodeDown(node: object): void {
    this.#downNodes.add(node);
    this.#synced = false;
    this.#recompute();
  }

  /** Re-issues SSUBSCRIBE for every recorded channel; node-redis skips the ones it already holds. */
  async #sync(): Promise<void> {
    const cluster = this.#cluster;
    if (cluster === undefined || this.#syncing) return;
    this.#syncing = true;
    try {
      // Every master gets the scripts before the backplane reports ready; see loadScripts for why.
      await Promise.all(
        cluster.masters.map(async (master) => {
          const node = await cluster.nodeClient(master);
          const load = async (): Promise<void> => {
            if (this.historyEnabled) await loadScripts((a) => node.sendCommand(a));
            await loadPresenceScripts((a) => node.sendCommand(a));
          };
          await withTimeout(load(), COMMAND_TIMEOUT_MS, () => new Error(`SCRIPT LOAD on ${master.address} timed out`));
        }),
      );
      type Listener = (message: Buffer, channel: Buffer) => void;
      const subscriptions: Array<[string, Listener]> = [
        ...[...this.#channels.keys()].map((channel): [string, Listener] => [channel, this.#onMessage]),
        ...[...this.#presenceChannels.channels.keys()].map((channel): [string, Listener] => [channel, this.#presenceChannels.listener]),
      ];
      await Promise.all(
        subscriptions.map(([channel, listener]) =>
          withTimeout(cluster.sSubscribe(channel, listener, true), COMMAND_TIMEOUT_MS, () => new Error(`SSUBSCRIBE ${channel} timed out`)),
        ),
      );
      if (this.#cluster !== cluster) return;
      this.#synced = true;
    } catch (err) {
      if (this.#cluster !== cluster) return;
      this.#reporter.noteError(err);
      // Retry later rather than in a tight loop against a node that keeps refusing.
      this.#syncRetryTimer = setTimeout(() => {
        this.#syncRetryTimer = undefined;
        this.#recompute();
      }, 1000);
    } finally {
      this.#syncing = false;
    }
    this.#recompute();
  }

  #recompute(): void {
    if (this.#closing !== undefined) return;
    const healthy = this.#connected && this.#downNodes.size === 0;
    if (healthy && !this.#synced) {
      if (!this.#syncing && this.#syncRetryTimer === undefined) void this.#sync();
    } else if (healthy && this.#synced) {
      this.#reporter.set('ready');
      this.#resolveStarted?.();
      this.#resolveStarted = undefined;
      this.#rejectStarted = undefined;
      return;
    }
    if (this.#reporter.state === 'ready') this.#reporter.set('down');
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
