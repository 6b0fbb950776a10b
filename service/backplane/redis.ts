import { RedisClient } from '@redis/client';
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
  describeError,
  redactUrl,
  resolveConnectionSettings,
  socketOptions,
  withTimeout,
  type RedisConnectionSettings,
} from './redis-common';
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

/** Options shared by the standalone and cluster Redis backplanes. */
export interface RedisBackplaneOptions {
  /** `redis://` or `rediss://` URL (TLS for rediss); may carry a password. Cluster: one seed node or the configuration endpoint. */
  url: string;
  /** AUTH token, used only when the URL carries no password. @default none */
  authToken?: string;
  /** PEM file with the CA that signed the server certificate (rediss only). @default the system CAs */
  tlsCaFile?: string;
  /** Prefix of every channel; isolates apps sharing one Redis. */
  channelPrefix: string;
  /** This instance's id; envelopes tagged with it are dropped on receipt. */
  instanceId: string;
  logger: Logger;
  /** Per-room history for message recovery; size 0 keeps the plain publish path. @default off (size 0) */
  history?: HistoryOptions;
}

/** How often the publisher connection asks ROLE, to notice a primary demoted without a dropped connection. */
export const ROLE_CHECK_INTERVAL_MS = 1000;
/** After this long down on a node reached by following a failover, go back to the configured endpoint. */
const REDIRECT_GIVE_UP_MS = 5000;
/** Connections to try in one failover episode before waiting for the next ROLE tick. */
const MAX_FAILOVER_HOPS = 4;

/**
 * The bare node-redis client: pub/sub, sendCommand and connection handling, without the ~1,000 generated command
 * methods createClient() attaches (building those costs a few hundred ms of start-up and memory we never use).
 */
type Client = RedisClient<NoExtensions, NoExtensions, NoExtensions, 3, NoExtensions>;
/** No modules, functions, scripts or type mapping: what createClient() defaults to. */
type NoExtensions = Record<string, never>;
interface Address {
  readonly host: string;
  readonly port: number;
}

/**
 * Backplane over a standalone Redis or a replication group with cluster mode disabled (ElastiCache primary
 * endpoint). Publishes on one connection and subscribes on another, so a slow subscriber never delays publishes.
 *
 * Start-up: `start()` resolves on the first `ready` and never rejects because Redis is unreachable; it keeps
 * retrying in the background (watch `onStateChange`). So the relay may call `start()` without awaiting it and
 * serve /healthz (503) until Redis appears. Configuration errors (URL, CA file) throw from the constructor.
 * `start()` rejects only if `close()` runs before the first `ready`.
 *
 * Subscriptions: `subscribe`/`unsubscribe` record the room and apply it when connected; while Redis is down they
 * resolve at once and the subscription is made on reconnect. They never reject while down.
 */
export class RedisBackplane implements Backplane {
  readonly kind = 'redis' as const;
  readonly historyEnabled: boolean;
  readonly #opts: RedisBackplaneOptions;
  readonly #history: HistoryOptions;
  readonly #epochs = new EpochSource();
  readonly #settings: RedisConnectionSettings;
  readonly #configured: Address;
  readonly #reporter: StateReporter;
  readonly #logger: Logger;
  readonly #broadcast: string;
  /** channel → target for every channel we want subscribed, broadcast included; the source of truth after reconnects. */
  readonly #channels = new Map<string, Target>();
  #handler: FrameHandler | undefined;
  readonly #presenceChannels: PresenceChannels;
  readonly #presence: RedisPresenceStore;
  #controlHandler: ControlHandler | undefined;
  readonly #control: string;

  #pub: Client | undefined;
  #sub: Client | undefined;
  /** Bumped whenever the connection pair is replaced, so events from a discarded pair are ignored. */
  #generation = 0;
  #target: Address;
  #subSynced = false;
  #roleOk = false;
  /** Generation whose ROLE check is in flight, so one check runs per connection pair. */
  #roleCheckFor = -1;
  #roleUnsupported = false;
  /** Generation whose primary has the history scripts loaded (loaded before the first publish, see loadScripts). */
  #scriptsLoadedFor = -1;
  #failoverHops = 0;
  #downSince = 0;
  #timer: NodeJS.Timeout | undefined;
  #started: Promise<void> | undefined;
  #resolveStarted: (() => void) | undefined;
  #rejectStarted: ((err: Error) => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(opts: RedisBackplaneOptions) {
    this.#opts = opts;
    this.#history = opts.history ?? HISTORY_OFF;
    this.historyEnabled = this.#history.size > 0;
    this.#settings = resolveConnectionSettings(opts.url, opts.authToken, opts.tlsCaFile);
    this.#configured = { host: this.#settings.endpoint.host, port: this.#settings.endpoint.port };
    this.#target = this.#configured;
    this.#logger = opts.logger.child({ url: redactUrl(opts.url) });
    this.#reporter = new StateReporter('redis', this.#logger);
    this.#broadcast = broadcastChannel(opts.channelPrefix);
    this.#channels.set(this.#broadcast, null);
    this.#presenceChannels = new PresenceChannels(opts.channelPrefix);
    this.#presence = new RedisPresenceStore(() => {
      const pub = this.#pub;
      return this.#reporter.state === 'ready' && pub !== undefined ? (_key, args) => pub.sendCommand(args) : undefined;
    }, opts.channelPrefix, 'PUBLISH', 'redis');
    this.#control = controlChannel(opts.channelPrefix);
    // Recorded like the broadcast channel so every (re)subscription includes it; #onMessage routes it first.
    this.#channels.set(this.#control, null);
  }

  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    if (this.#closing !== undefined) return Promise.reject(new BackplaneUnavailableError('the redis backplane is closed'));
    this.#started = new Promise<void>((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    this.#connect(this.#configured);
    this.#timer = setInterval(() => this.#tick(), ROLE_CHECK_INTERVAL_MS);
    this.#timer.unref();
    return this.#started;
  }

  async publish(target: Target, frame: Buffer): Promise<void> {
    const pub = this.#pub;
    if (this.#reporter.state !== 'ready' || pub === undefined) {
      throw new BackplaneUnavailableError();
    }
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    try {
      // Our own bound: node-redis's command timeout stops counting once the command is written to the socket.
      await withTimeout(pub.sendCommand(['PUBLISH', channel, encodeEnvelope(this.#opts.instanceId, frame)]), PUBLISH_TIMEOUT_MS, publishTimedOut);
    } catch (err) {
      throw new BackplaneUnavailableError(`publishing to redis failed (${describeError(err)}); retry shortly`);
    }
  }

  async append(target: Target, frame: Buffer): Promise<number> {
    const pub = this.#pub;
    if (this.#reporter.state !== 'ready' || pub === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    // Broadcasts are numbered but not stored: no join can ask for them.
    const stored = target === null ? 0 : this.#history.size;
    const args = appendArgs('PUBLISH', channel, this.#opts.instanceId, frame, stored, this.#history, this.#epochs.next());
    return appendWithScript((a) => pub.sendCommand(a, BUFFER_REPLIES), 'redis', historyKeys(this.#opts.channelPrefix, target), args);
  }

  async appendOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<OnceAppend> {
    const pub = this.#pub;
    if (this.#reporter.state !== 'ready' || pub === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    const stored = target === null ? 0 : this.#history.size;
    const keys = historyKeys(this.#opts.channelPrefix, target);
    const args = appendArgs('PUBLISH', channel, this.#opts.instanceId, frame, stored, this.#history, this.#epochs.next());
    const idem = once === undefined ? undefined : { key: idempotencyKey(this.#opts.channelPrefix, target, once.key), windowMs: once.windowMs };
    return appendOnceWithScript((a) => pub.sendCommand(a, BUFFER_REPLIES), 'redis', keys, args, idem);
  }

  async publishOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<boolean> {
    if (once === undefined) {
      await this.publish(target, frame);
      return true;
    }
    const pub = this.#pub;
    if (this.#reporter.state !== 'ready' || pub === undefined) throw new BackplaneUnavailableError();
    const channel = target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
    const idem = idempotencyKey(this.#opts.channelPrefix, target, once.key);
    return publishOnceWithScript((a) => pub.sendCommand(a, BUFFER_REPLIES), 'redis', idem, 'PUBLISH', channel, encodeEnvelope(this.#opts.instanceId, frame), once.windowMs);
  }

  async publishControl(message: Buffer, once?: Once): Promise<boolean> {
    const pub = this.#pub;
    if (this.#reporter.state !== 'ready' || pub === undefined) throw new BackplaneUnavailableError();
    if (once !== undefined) {
      const idem = idempotencyKey(this.#opts.channelPrefix, { control: true }, once.key);
      return publishOnceWithScript((a) => pub.sendCommand(a, BUFFER_REPLIES), 'redis', idem, 'PUBLISH', this.#control, message, once.windowMs);
    }
    try {
      await withTimeout(pub.sendCommand(['PUBLISH', this.#control, message]), PUBLISH_TIMEOUT_MS, () => new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`));
    } catch (err) {
      throw new BackplaneUnavailableError(`publishing to redis failed (${describeError(err)}); retry shortly`);
    }
    return true;
  }

  onControl(handler: ControlHandler): void {
    this.#controlHandler = handler;
  }

  async readHistory(room: string, since: HistoryPosition | undefined, limits?: ReadLimits): Promise<HistoryRead> {
    const pub = this.#pub;
    if (this.#reporter.state !== 'ready' || pub === undefined) throw new BackplaneUnavailableError();
    const args = readArgs(this.#history, this.#epochs.next(), since, limits);
    return readWithScript((a) => pub.sendCommand(a, BUFFER_REPLIES), 'redis', room, historyKeys(this.#opts.channelPrefix, room), args);
  }

  async subscribe(room: string): Promise<void> {
    const channel = roomChannel(this.#opts.channelPrefix, room);
    if (this.#channels.has(channel)) return;
    this.#channels.set(channel, room);
    const sub = this.#sub;
    if (sub === undefined || !sub.isReady) return;
    try {
      await withTimeout(sub.subscribe(channel, this.#onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('SUBSCRIBE timed out'));
    } catch (err) {
      // The room stays recorded; the next reconnect subscribes it.
      this.#logger.debug({ room, error: describeError(err) }, 'subscribe deferred until redis reconnects');
    }
  }

  async unsubscribe(room: string): Promise<void> {
    const channel = roomChannel(this.#opts.channelPrefix, room);
    if (!this.#channels.delete(channel)) return;
    const sub = this.#sub;
    if (sub === undefined || !sub.isReady) return;
    try {
      await withTimeout(sub.unsubscribe(channel, this.#onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('UNSUBSCRIBE timed out'));
    } catch (err) {
      // A stale subscription is harmless: messages on unknown channels are dropped, and the next sync removes it.
      this.#logger.debug({ room, error: describeError(err) }, 'unsubscribe deferred until redis reconnects');
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
    const sub = this.#sub;
    if (channel === undefined || sub === undefined || !sub.isReady) return;
    try {
      await withTimeout(sub.subscribe(channel, this.#presenceChannels.listener, true), COMMAND_TIMEOUT_MS, () => new Error('SUBSCRIBE timed out'));
    } catch (err) {
      this.#logger.debug({ room, error: describeError(err) }, 'presence subscribe deferred until redis reconnects');
    }
  }

  async unwatchPresence(room: string): Promise<void> {
    const channel = this.#presenceChannels.remove(room);
    const sub = this.#sub;
    if (channel === undefined || sub === undefined || !sub.isReady) return;
    try {
      await withTimeout(sub.unsubscribe(channel, this.#presenceChannels.listener, true), COMMAND_TIMEOUT_MS, () => new Error('UNSUBSCRIBE timed out'));
    } catch (err) {
      this.#logger.debug({ room, error: describeError(err) }, 'presence unsubscribe deferred until redis reconnects');
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
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#generation++;
    this.#reporter.set('closed');
    this.#rejectStarted?.(new BackplaneUnavailableError('the redis backplane was closed before it became ready'));
    this.#started?.catch(() => undefined);
    const clients = [this.#pub, this.#sub];
    this.#pub = undefined;
    this.#sub = undefined;
    this.#closing = Promise.all(clients.map((client) => closeClient(client))).then(() => undefined);
    return this.#closing;
  }

  // Arrow function: one stable identity, so node-redis treats repeated subscribes as no-ops.
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

  /** Replaces the connection pair with a new one to `target`; node-redis retries each connection until it succeeds. */
  #connect(target: Address): void {
    const old = [this.#pub, this.#sub];
    const generation = ++this.#generation;
    this.#target = target;
    this.#subSynced = false;
    this.#roleOk = false;
    for (const client of old) client?.destroy();

    const options = {
      socket: socketOptions(this.#settings, target.host, target.port),
      username: this.#settings.endpoint.username,
      password: this.#settings.endpoint.password,
      // Commands must fail fast while offline instead of queueing behind a dead connection.
      disableOfflineQueue: true,
      // Every command is bounded by withTimeout; node-redis's own per-command timer would cost a timer and an
      // AbortSignal per publish on the hot path.
      commandOptions: { timeout: 0 },
    };
    const pub: Client = new RedisClient(options);
    const sub: Client = new RedisClient(options);
    this.#pub = pub;
    this.#sub = sub;
    const current = () => generation === this.#generation;

    for (const client of [pub, sub]) {
      client.on('error', (err: unknown) => {
        if (!current()) return;
        this.#reporter.noteError(err);
        this.#recompute();
      });
      client.on('reconnecting', () => {
        if (!current()) return;
        if (client === sub) this.#subSynced = false;
        if (client === pub) {
          this.#roleOk = false;
          // A reconnect may reach a restarted server with an empty script cache.
          this.#scriptsLoadedFor = -1;
        }
        this.#recompute();
      });
      client.on('end', () => {
        if (current()) this.#recompute();
      });
      // Errors are reported through 'error'; connect() only rejects when the client is destroyed.
      client.connect().catch(() => undefined);
    }
    pub.on('ready', () => {
      if (current()) void this.#checkRole(generation);
    });
    sub.on('ready', () => {
      if (current()) void this.#syncSubscriptions(generation);
    });
    this.#recompute();
  }

  /** Makes the subscriber's channels match `#channels`; node-redis resubscribes on its own, this covers what it missed. */
  async #syncSubscriptions(generation: number): Promise<void> {
    const sub = this.#sub;
    if (sub === undefined) return;
    try {
      const wanted = [...this.#channels.keys()];
      await withTimeout(sub.subscribe(wanted, this.#onMessage, true), COMMAND_TIMEOUT_MS, () => new Error('SUBSCRIBE timed out'));
      const presence = [...this.#presenceChannels.channels.keys()];
      if (presence.length > 0) {
        await withTimeout(sub.subscribe(presence, this.#presenceChannels.listener, true), COMMAND_TIMEOUT_MS, () => new Error('SUBSCRIBE timed out'));
      }
      const known = (channel: string): boolean => this.#channels.has(channel) || this.#presenceChannels.channels.has(channel);
      const stale = [...sub.getPubSubListeners('CHANNELS').keys()].filter((channel) => !known(channel));
      if (stale.length > 0) {
        // Without a listener: drops every listener of those channels, room and presence ones alike.
        await withTimeout(sub.unsubscribe(stale), COMMAND_TIMEOUT_MS, () => new Error('UNSUBSCRIBE timed out'));
      }
      if (generation !== this.#generation || !sub.isReady) return;
      this.#subSynced = true;
      this.#recompute();
    } catch (err) {
      if (generation !== this.#generation) return;
      this.#reporter.noteError(err);
      // Retried by the next 'ready' or the periodic tick.
    }
  }

  /** ROLE on the publisher: only a primary may take our publishes, or instances on the old primary never hear them. */
  async #checkRole(generation: number): Promise<void> {
    const pub = this.#pub;
    if (pub === undefined || this.#roleCheckFor === generation) return;
    this.#roleCheckFor = generation;
    try {
      // Before the first publish on this connection pair; see loadScripts for why.
      if (this.#scriptsLoadedFor !== generation) {
        const load = async (): Promise<void> => {
          if (this.historyEnabled) await loadScripts((a) => pub.sendCommand(a));
          await loadPresenceScripts((a) => pub.sendCommand(a));
        };
        await withTimeout(load(), COMMAND_TIMEOUT_MS, () => new Error(`SCRIPT LOAD: no reply within ${COMMAND_TIMEOUT_MS} ms`));
        if (generation !== this.#generation) return;
        this.#scriptsLoadedFor = generation;
      }
      if (this.#roleUnsupported) {
        this.#roleOk = true;
        this.#recompute();
        return;
      }
      const reply = await withTimeout(pub.sendCommand(['ROLE']), COMMAND_TIMEOUT_MS, () => new Error(`no reply within ${COMMAND_TIMEOUT_MS} ms`));
      if (generation !== this.#generation) return;
      const role = parseRole(reply);
      if (role.role === 'master') {
        this.#failoverHops = 0;
        this.#roleOk = true;
        this.#recompute();
        return;
      }
      this.#roleOk = false;
      this.#reporter.noteError(
        new Error(`redis node ${this.#target.host}:${this.#target.port} is a ${role.role}, not the primary (failover); reconnecting`),
      );
      this.#recompute();
      this.#followFailover(role.master);
    } catch (err) {
      if (generation !== this.#generation) return;
      if (/unknown command/i.test(describeError(err))) {
        // Some managed Redis flavours hide ROLE; without it we cannot detect demotion, so trust the endpoint.
        this.#roleUnsupported = true;
        this.#logger.warn({ error: describeError(err) }, 'ROLE is not available; failover detection disabled');
        this.#roleOk = true;
        this.#recompute();
        return;
      }
      // A node that cannot answer ROLE in time is hung (or the link is): report down until a check succeeds.
      this.#reporter.noteError(new Error(`redis did not answer ROLE (${describeError(err)})`));
      this.#roleOk = false;
      this.#recompute();
    } finally {
      if (this.#roleCheckFor === generation) this.#roleCheckFor = -1;
    }
  }

  /**
   * First reconnect to the configured endpoint (a DNS primary endpoint moves to the new primary), then, if that
   * node is still a replica, to the primary it names.
   */
  #followFailover(reportedMaster: Address | undefined): void {
    this.#failoverHops++;
    if (this.#failoverHops > MAX_FAILOVER_HOPS) {
      this.#failoverHops = 0;
      return; // the next tick starts a fresh episode from the configured endpoint
    }
    const atConfigured = sameAddress(this.#target, this.#configured);
    const next = this.#failoverHops === 1 || reportedMaster === undefined || !atConfigured ? this.#configured : reportedMaster;
    this.#logger.warn({ from: this.#target, to: next }, 'redis node is not the primary; reconnecting');
    this.#connect(next);
  }

  #tick(): void {
    if (this.#closing !== undefined) return;
    const state = this.#reporter.state;
    if (state === 'ready') {
      void this.#checkRole(this.#generation);
      return;
    }
    const pub = this.#pub;
    if (pub?.isReady === true && !this.#roleOk) void this.#checkRole(this.#generation);
    if (this.#sub?.isReady === true && !this.#subSynced) void this.#syncSubscriptions(this.#generation);
    if (
      state === 'down' &&
      !sameAddress(this.#target, this.#configured) &&
      this.#downSince > 0 &&
      Date.now() - this.#downSince > REDIRECT_GIVE_UP_MS
    ) {
      // The node we followed is gone; the configured endpoint is the only stable name we have.
      this.#failoverHops = 0;
      this.#connect(this.#configured);
    }
  }

  #recompute(): void {
    if (this.#closing !== undefined) return;
    const ready = this.#pub?.isReady === true && this.#sub?.isReady === true && this.#subSynced && this.#roleOk;
    if (ready) {
      this.#downSince = 0;
      this.#reporter.set('ready');
      this.#resolveStarted?.();
      this.#resolveStarted = undefined;
      this.#rejectStarted = undefined;
      return;
    }
    if (this.#downSince === 0) this.#downSince = Date.now();
    if (this.#reporter.state === 'ready') this.#reporter.set('down');
  }
}

function publishTimedOut(): Error {
  return new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`);
}

function sameAddress(a: Address, b: Address): boolean {
  return a.host === b.host && a.port === b.port;
}

/** ROLE replies: ['master', offset, replicas] or ['slave', host, port, state, offset]. */
function parseRole(reply: unknown): { role: string; master?: Address } {
  if (!Array.isArray(reply) || reply.length === 0) return { role: 'unknown' };
  const role = String(reply[0]);
  if (role === 'slave' && reply.length >= 3) {
    return { role: 'replica', master: { host: String(reply[1]), port: Number(reply[2]) } };
  }
  return { role };
}

/** Graceful QUIT with a bound; a dead connection is destroyed instead. Never throws. */
async function closeClient(client: Client | undefined): Promise<void> {
  if (client === undefined) return;
  try {
    if (client.isReady) {
      await withTimeout(client.close(), COMMAND_TIMEOUT_MS, () => new Error('close timed out'));
    } else {
      client.destroy();
    }
  } catch {
    client.destroy();
  }
}
