/**
 * The Redis backplane, once, over a transport. This file holds everything standalone Redis and Redis Cluster
 * share: the channels we want subscribed (rooms, broadcast and extra channels), envelopes, history append/read,
 * state reporting and the start/close life cycle. A transport (redis.ts: a publisher + subscriber connection pair
 * that follows failovers; cluster.ts: a node-redis cluster client with sharded pub/sub) only moves commands and
 * pub/sub messages and says when it is ready.
 *
 * Extension points for features built on the backplane:
 * - `runScript(script, keys, args)`: a Lua script run on the node that owns `keys[0]`; give a room's keys its
 *   hash tag (`{room}`, see historyKey/roomKey) so they share the room's slot. `registerScript` loads a script on
 *   every primary before the backplane reports ready, so EVALSHA never falls back mid-stream.
 * - `command(key, args)`: one plain command on the node that owns `key`.
 * - `listen(channel, handler)` / `unlisten(channel)` / `publishRaw(channel, bytes)`: extra channels kept across
 *   reconnects, with raw bytes in and out. `extraChannel(prefix, name)` is one every instance may listen to;
 *   `roomExtraChannel(prefix, kind, room)` / `roomKey` are a per-room channel / key on the room's slot (types.ts).
 * - The control channel (`<prefix>:control`, the server API's): `publishControl(message, once?)` / `onControl`.
 * - After a reconnect the hub catches rooms up from the history when the state goes down → ready
 *   (hub.ts, registry.catchUpAll) and has presence adopt the rooms whose tracking started meanwhile (core/presence.ts,
 *   resync); listeners of extra channels see the same `onStateChange`.
 */
import { PRESENCE_SCRIPTS, RedisPresenceStore } from './presence-store';
import type { PresenceHandler, PresenceList, PresenceMember, PresenceTiming, TrackPhase } from './types';
import { ErrorReply } from '@redis/client';
import type { Logger } from 'pino';
import {
  HISTORY_OFF,
  appendArgs,
  historyKey,
  loadScripts,
  readArgs,
  runScript as evalScript,
  type HistoryOptions,
  type HistoryPosition,
  type HistoryRead,
  type LuaScript,
  type ReadLimits,
  type SendCommand,
} from './history';
import { AppendBatcher } from './append-batch';
import { ReadGate } from './read-gate';
import { appendOnceWithScript, publishOnceWithScript } from './idempotency';
import {
  COMMAND_TIMEOUT_MS,
  PUBLISH_TIMEOUT_MS,
  StateReporter,
  describeError,
  readWithScript,
  redactUrl,
  resolveConnectionSettings,
  withTimeout,
} from './redis-common';
import type { RedisBackplaneOptions, RedisTransport, TransportFactory, TransportHost } from './transport';

export type { RedisBackplaneOptions, RedisTransport, TransportFactory, TransportHost } from './transport';
import {
  BackplaneUnavailableError,
  broadcastChannel,
  controlChannel,
  decodeEnvelope,
  encodeEnvelope,
  idempotencyKey,
  isOwnEcho,
  roomChannel,
  type Backplane,
  type BackplaneStatus,
  type ControlHandler,
  type FrameHandler,
  type Once,
  type OnceAppend,
  type RawHandler,
  type Target,
} from './types';

/** What a subscribed channel carries: room/broadcast envelopes for the hub, or raw bytes for an extra channel. */
type ChannelUse = { readonly kind: 'frames'; readonly target: Target } | { readonly kind: 'raw'; readonly handler: RawHandler };

/**
 * Backplane over Redis through a transport. Start-up: `start()` resolves on the first `ready` and never rejects
 * because Redis is unreachable; it keeps retrying in the background (watch `onStateChange`). Configuration
 * errors (URL, CA file) throw from the constructor. `start()` rejects only if `close()` runs before the first
 * `ready`. `subscribe`/`unsubscribe`/`listen` record the channel and apply it when connected; while Redis is down
 * they resolve at once and the subscription is made on reconnect.
 */
export class TransportBackplane implements Backplane {
  readonly kind: 'redis' | 'cluster';
  readonly historyEnabled: boolean;
  readonly #opts: RedisBackplaneOptions;
  readonly #history: HistoryOptions;
  readonly #batcher: AppendBatcher;
  readonly #transport: RedisTransport;
  readonly #reporter: StateReporter;
  readonly #logger: Logger;
  readonly #broadcast: string;
  readonly #control: string;
  /** channel → use for every channel we want subscribed, broadcast included. */
  readonly #channels = new Map<string, ChannelUse>();
  readonly #scripts = new Set<LuaScript>();
  readonly #presence: RedisPresenceStore;
  /** History reads that can carry frames (with `since`) share the connection with publishes and ROLE: a few at a time. */
  readonly #replayReads = new ReadGate();
  #handler: FrameHandler | undefined;
  #controlHandler: ControlHandler | undefined;
  #started: Promise<void> | undefined;
  #resolveStarted: (() => void) | undefined;
  #rejectStarted: ((err: Error) => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(opts: RedisBackplaneOptions, transport: TransportFactory, logFields: Record<string, string> = {}) {
    this.#opts = opts;
    this.#history = opts.history ?? HISTORY_OFF;
    this.historyEnabled = this.#history.size > 0;
    const settings = resolveConnectionSettings(opts.url, opts.authToken, opts.tlsCaFile);
    this.#logger = opts.logger.child({ url: redactUrl(opts.url), ...logFields });
    this.#transport = transport(settings, this.#logger);
    this.#presence = new RedisPresenceStore(this, opts.channelPrefix, this.#transport.publishCommand);
    for (const lua of Object.values(PRESENCE_SCRIPTS)) this.#scripts.add(lua);
    this.#batcher = new AppendBatcher({
      publishCommand: this.#transport.publishCommand,
      prefix: opts.channelPrefix,
      instanceId: opts.instanceId,
      history: this.#history,
      // A cluster runs a script on one slot only: one call per room's hash tag there.
      oneSlot: this.#transport.kind === 'redis',
      store: this.#transport.store,
      timeoutMs: PUBLISH_TIMEOUT_MS,
    });
    this.kind = this.#transport.kind;
    this.#reporter = new StateReporter(this.kind, this.#logger);
    this.#broadcast = broadcastChannel(opts.channelPrefix);
    this.#channels.set(this.#broadcast, { kind: 'frames', target: null });
    this.#control = controlChannel(opts.channelPrefix);
    // Subscribed like the broadcast channel by every instance; its messages go to the onControl handler.
    this.#channels.set(this.#control, { kind: 'raw', handler: (message) => this.#controlHandler?.(message) });
  }

  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    if (this.#closed()) return Promise.reject(new BackplaneUnavailableError(`the ${this.kind} backplane is closed`));
    this.#started = new Promise<void>((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    this.#transport.start(this.#host);
    return this.#started;
  }

  async publish(target: Target, frame: Buffer): Promise<void> {
    await this.publishRaw(this.#channelOf(target), encodeEnvelope(this.#opts.instanceId, frame));
  }

  /** Publishes `message` as is on any channel (an extra channel, or a room's with a ready-made envelope). */
  async publishRaw(channel: string, message: Buffer): Promise<void> {
    this.#assertReady();
    try {
      // Our own bound: node-redis's command timeout stops counting once the command is written to the socket.
      await withTimeout(this.#transport.publish(channel, message), PUBLISH_TIMEOUT_MS, () => new Error(`no reply within ${PUBLISH_TIMEOUT_MS} ms`));
    } catch (err) {
      throw new BackplaneUnavailableError(`publishing to ${this.#transport.store} failed (${describeError(err)}); retry shortly`);
    }
  }

  async append(target: Target, frame: Buffer): Promise<number> {
    this.#assertReady();
    // The key carries the channel's hash tag, so in a cluster the script and its SPUBLISH run on the room's shard.
    return this.#batcher.append(target, this.#channelOf(target), frame, this.#batchSend);
  }

  readonly #batchSend = (key: string, args: Array<string | Buffer>): Promise<unknown> => this.#transport.send(key, args);

  async appendOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<OnceAppend> {
    this.#assertReady();
    // Without a key it is a plain append: batched with the client publishes of the same turn, on the script's fast path.
    if (once === undefined) return { position: await this.#batcher.appendPosition(target, this.#channelOf(target), frame, this.#batchSend), duplicate: false };
    // Broadcasts are numbered but not stored: no join can ask for them.
    const stored = target === null ? 0 : this.#history.size;
    const keys = [historyKey(this.#opts.channelPrefix, target)];
    const args = appendArgs(this.#transport.publishCommand, this.#channelOf(target), this.#opts.instanceId, frame, stored, this.#history);
    const idem = { key: idempotencyKey(this.#opts.channelPrefix, target, once.key), windowMs: once.windowMs };
    return appendOnceWithScript(this.#sendTo(keys[0]), this.#transport.store, keys, args, idem);
  }

  async publishOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<boolean> {
    if (once === undefined) {
      await this.publish(target, frame);
      return true;
    }
    this.#assertReady();
    const idem = idempotencyKey(this.#opts.channelPrefix, target, once.key);
    const message = encodeEnvelope(this.#opts.instanceId, frame);
    return publishOnceWithScript(this.#sendTo(idem), this.#transport.store, idem, this.#transport.publishCommand, this.#channelOf(target), message, once.windowMs);
  }

  async publishControl(message: Buffer, once?: Once): Promise<boolean> {
    if (once === undefined) {
      await this.publishRaw(this.#control, message);
      return true;
    }
    this.#assertReady();
    const idem = idempotencyKey(this.#opts.channelPrefix, { control: true }, once.key);
    return publishOnceWithScript(this.#sendTo(idem), this.#transport.store, idem, this.#transport.publishCommand, this.#control, message, once.windowMs);
  }

  onControl(handler: ControlHandler): void {
    this.#controlHandler = handler;
  }

  async readHistory(room: string, since: HistoryPosition | undefined, limits?: ReadLimits): Promise<HistoryRead> {
    this.#assertReady();
    const key = historyKey(this.#opts.channelPrefix, room);
    const args = readArgs(this.#history, since, limits);
    const send = (): Promise<HistoryRead> => readWithScript(this.#sendTo(key), this.#transport.store, room, [key], args);
    // A read without `since` answers the position only; one with it may answer a page of frames and waits for a slot,
    // then checks again that the backplane is still up, since it may have waited a while.
    const read =
      since === undefined
        ? await send()
        : await this.#replayReads.run(() => {
            this.#assertReady();
            return send();
          });
    this.#batcher.noteRead(room, read.position);
    return read;
  }

  /**
   * Runs a Lua script on the node that owns `keys[0]` (EVALSHA, EVAL when the node lost it) and returns the raw
   * reply (strings as Buffers). Register the script first (registerScript) when publishes depend on its order.
   * Rejects with BackplaneUnavailableError while down or when Redis cannot be reached or does not answer in time,
   * and with a plain Error naming the script when Redis answers with an error (a script error).
   */
  async runScript(script: LuaScript, keys: readonly string[], args: Array<string | Buffer>): Promise<unknown> {
    this.#assertReady();
    if (keys.length === 0) throw new Error('runScript needs at least one key: the first key routes the script to its node');
    return this.#bounded(`script ${script.sha.slice(0, 12)}`, 'running a script', () => evalScript(this.#sendTo(keys[0]), script, keys, args));
  }

  /**
   * Runs one command on the node that owns `key` (the only node, standalone) and returns the raw reply (strings as
   * Buffers). Commands issued in the same turn go out together. Rejects with BackplaneUnavailableError while down or
   * when Redis cannot be reached or does not answer in time, and with a plain Error when Redis answers with an error.
   */
  async command(key: string, args: Array<string | Buffer>): Promise<unknown> {
    this.#assertReady();
    return this.#bounded(String(args[0]), String(args[0]), () => this.#transport.send(key, args));
  }

  /**
   * A reply within COMMAND_TIMEOUT_MS. Redis answering with an error rejects with a plain Error (the command or its
   * arguments are at fault, and retrying will not help); no reply, or none in time, with BackplaneUnavailableError.
   */
  async #bounded(what: string, doing: string, send: () => Promise<unknown>): Promise<unknown> {
    try {
      return await withTimeout(send(), COMMAND_TIMEOUT_MS, () => new Error(`no reply within ${COMMAND_TIMEOUT_MS} ms`));
    } catch (err) {
      if (err instanceof ErrorReply) throw new Error(`${what} failed on ${this.#transport.store}: ${err.message}`, { cause: err });
      throw new BackplaneUnavailableError(`${doing} on ${this.#transport.store} failed (${describeError(err)}); retry shortly`);
    }
  }

  /**
   * Loads `script` on every primary before each `ready` (from the next connection on, if already connected), as
   * the history scripts are. Call it before start().
   */
  registerScript(script: LuaScript): void {
    this.#scripts.add(script);
  }

  async subscribe(room: string): Promise<void> {
    await this.#want(roomChannel(this.#opts.channelPrefix, room), { kind: 'frames', target: room });
  }

  async unsubscribe(room: string): Promise<void> {
    await this.#unwant(roomChannel(this.#opts.channelPrefix, room));
  }

  /** Subscribes an extra channel, kept across reconnects; every message on it goes to `handler` as raw bytes. */
  async listen(channel: string, handler: RawHandler): Promise<void> {
    const existing = this.#channels.get(channel);
    if (existing?.kind === 'frames' || channel === this.#control) {
      throw new Error(`channel ${channel} belongs to the relay (rooms, broadcast or control); listen on a channel of its own (extraChannel, roomExtraChannel)`);
    }
    await this.#want(channel, { kind: 'raw', handler });
  }

  async unlisten(channel: string): Promise<void> {
    if (this.#channels.get(channel)?.kind !== 'raw' || channel === this.#control) return;
    await this.#unwant(channel);
  }

  presenceEnter(room: string, members: readonly PresenceMember[], timing: PresenceTiming, watched: boolean): Promise<number | null> {
    return this.#presence.enter(room, members, timing, watched);
  }

  presenceLeave(room: string, connectionIds: readonly string[]): Promise<number> {
    return this.#presence.leave(room, connectionIds);
  }

  presencePrune(room: string): Promise<number> {
    return this.#presence.prune(room);
  }

  presenceTrack(room: string, timing: PresenceTiming, phase: TrackPhase): Promise<void> {
    return this.#presence.track(room, timing, phase);
  }

  presenceMembers(room: string, limit: number, timing: PresenceTiming): Promise<PresenceList | null> {
    return this.#presence.list(room, limit, timing);
  }

  presenceTracked(rooms: readonly string[]): Promise<boolean[]> {
    return this.#presence.tracked(rooms);
  }

  watchPresence(room: string): Promise<void> {
    return this.#presence.watch(room);
  }

  unwatchPresence(room: string): Promise<void> {
    return this.#presence.unwatch(room);
  }

  onPresence(handler: PresenceHandler): void {
    this.#presence.onEvent(handler);
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
    // 'closed' before the transport closes, so the events its connections emit on the way out are ignored.
    this.#reporter.set('closed');
    this.#rejectStarted?.(new BackplaneUnavailableError(`the ${this.kind} backplane was closed before it became ready`));
    this.#started?.catch(() => undefined);
    this.#closing = this.#transport.close();
    return this.#closing;
  }

  #closed(): boolean {
    return this.#reporter.state === 'closed';
  }

  #assertReady(): void {
    if (this.#reporter.state !== 'ready') throw new BackplaneUnavailableError();
  }

  #channelOf(target: Target): string {
    return target === null ? this.#broadcast : roomChannel(this.#opts.channelPrefix, target);
  }

  #sendTo(key: string): SendCommand {
    return (args) => this.#transport.send(key, args);
  }

  async #want(channel: string, use: ChannelUse): Promise<void> {
    const had = this.#channels.has(channel);
    this.#channels.set(channel, use);
    if (had || this.#closed()) return;
    try {
      await withTimeout(this.#transport.subscribe(channel), COMMAND_TIMEOUT_MS, () => new Error('subscribe timed out'));
    } catch (err) {
      // The channel stays recorded; the next resync after a reconnect subscribes it.
      this.#logger.debug({ channel, error: describeError(err) }, 'subscribe deferred until redis reconnects');
    }
  }

  async #unwant(channel: string): Promise<void> {
    if (!this.#channels.delete(channel) || this.#closed()) return;
    try {
      await withTimeout(this.#transport.unsubscribe(channel), COMMAND_TIMEOUT_MS, () => new Error('unsubscribe timed out'));
    } catch (err) {
      // A stale subscription is harmless: messages on unknown channels are dropped, and the next resync removes it.
      this.#logger.debug({ channel, error: describeError(err) }, 'unsubscribe deferred until redis reconnects');
    }
  }

  readonly #host: TransportHost = {
    wantedChannels: () => [...this.#channels.keys()],
    isWanted: (channel) => this.#channels.has(channel),
    onMessage: (message, channel) => this.#deliver(message, channel),
    prepareNode: async (send) => {
      const loads = [...this.#scripts].map((lua) => send(['SCRIPT', 'LOAD', lua.source]));
      // The history scripts first of all; see loadScripts for why they must be loaded before the first publish.
      if (this.historyEnabled) loads.push(loadScripts(send));
      await withTimeout(Promise.all(loads), COMMAND_TIMEOUT_MS, () => new Error(`SCRIPT LOAD: no reply within ${COMMAND_TIMEOUT_MS} ms`));
    },
    noteError: (err) => this.#reporter.noteError(err),
    setReady: (ready) => {
      if (this.#closed()) return;
      if (!ready) {
        if (this.#reporter.state === 'ready') this.#reporter.set('down');
        return;
      }
      this.#reporter.set('ready');
      this.#resolveStarted?.();
      this.#resolveStarted = undefined;
      this.#rejectStarted = undefined;
    },
  };

  #deliver(message: Buffer, channel: Buffer): void {
    const use = this.#channels.get(channel.toString());
    if (use === undefined) return;
    try {
      if (use.kind === 'raw') {
        use.handler(message);
        return;
      }
      if (this.#handler === undefined) return;
      const envelope = decodeEnvelope(message);
      if (envelope === null || isOwnEcho(envelope, this.#opts.instanceId)) return;
      this.#handler(use.target, envelope.frame, envelope.position);
    } catch (err) {
      this.#logger.error({ err, channel: channel.toString() }, 'frame handler threw');
    }
  }
}
