import type { Logger } from 'pino';
import {
  BackplaneUnavailableError,
  idempotencyKey,
  type Backplane,
  type BackplaneState,
  type BackplaneStatus,
  type ControlHandler,
  type FrameHandler,
  type PresenceHandler,
  type PresenceList,
  type PresenceMember,
  type PresenceTiming,
  type TrackPhase,
  type RawHandler,
  type FramePosition,
  type Once,
  type OnceAppend,
  type Target,
} from './types';
import { HISTORY_OFF, classify, frameHead, type HistoryOptions, type HistoryPosition, type HistoryRead, type ReadLimits } from './history';
import { RoomHistories, type RoomHistory } from './memory-history';
import { MemoryPresence } from './memory-presence';

/** How often idle histories are dropped, at most; they are also checked lazily on every use. */
const SWEEP_INTERVAL_MS = 30_000;

/**
 * The single-instance backplane: there are no other instances, so publish has nobody to reach
 * (the hub already delivered locally) and no frames ever arrive from elsewhere. With history on it keeps each
 * room's bounded history in process, with the same numbering, TTL and recovery rules as Redis, and hands every
 * numbered frame straight back to the hub.
 */
export class MemoryBackplane implements Backplane {
  readonly kind = 'memory' as const;
  readonly historyEnabled: boolean;
  private state: BackplaneState = 'connecting';
  private readonly listeners = new Set<(status: BackplaneStatus) => void>();
  private readonly histories: RoomHistories;
  private handler: FrameHandler | undefined;
  private readonly presence = new MemoryPresence();
  private readonly rawHandlers = new Map<string, RawHandler>();
  private controlHandler: ControlHandler | undefined;
  /** Idempotency keys seen, in the order they expire (every key of one relay has the same window), with what they answer. */
  private readonly onceKeys = new Map<string, { readonly expires: number; readonly position?: FramePosition }>();
  private sweepTimer: NodeJS.Timeout | undefined;

  /**
   * @param history per-room history; `maxBytes` bounds each room's bytes.
   * @param memoryMaxBytes cap on every room's history together; past it the least recently used rooms are dropped
   *   (they start a new epoch). @default no cap
   */
  constructor(
    private readonly history: HistoryOptions = HISTORY_OFF,
    private readonly logger?: Logger,
    memoryMaxBytes?: number,
  ) {
    this.historyEnabled = history.size > 0;
    this.histories = new RoomHistories(history, memoryMaxBytes);
  }

  /** Bytes the histories hold, rooms held and rooms evicted by the memory cap (for tests and metrics). */
  historyStats(): { bytes: number; rooms: number; evicted: number } {
    return this.histories.stats();
  }

  start(): Promise<void> {
    return settle(() => {
      if (this.historyEnabled && this.sweepTimer === undefined && this.state !== 'closed') {
        this.sweepTimer = setInterval(() => this.sweep(), Math.min(SWEEP_INTERVAL_MS, this.history.ttlSeconds * 1000));
        this.sweepTimer.unref();
      }
      this.setState('ready');
    });
  }

  /** Nobody else to reach; still rejects while not ready, as the Redis backplanes do while down. */
  publish(): Promise<void> {
    return settle(() => this.assertReady());
  }

  append(target: Target, frame: Buffer): Promise<number> {
    return settle(() => this.appendNow(target, frame));
  }

  appendOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<OnceAppend> {
    return settle(() => {
      this.assertReady();
      const key = once === undefined ? undefined : idempotencyKey('memory', target, once.key);
      const seen = key === undefined ? undefined : this.seenOnce(key);
      if (seen?.position !== undefined) return { position: seen.position, duplicate: true };
      this.appendNow(target, frame);
      const h = this.room(target);
      const position = { seq: h.seq, epoch: h.epoch };
      if (key !== undefined && once !== undefined) this.onceKeys.set(key, { expires: Date.now() + once.windowMs, position });
      return { position, duplicate: false };
    });
  }

  /** Nobody else to reach: only the idempotency key is recorded. */
  publishOnce(target: Target, _frame: Buffer, once: Once | undefined): Promise<boolean> {
    return settle(() => {
      this.assertReady();
      return once === undefined || this.firstTime(idempotencyKey('memory', target, once.key), once);
    });
  }

  /** The only instance: the control message goes straight to this instance's handler. */
  publishControl(message: Buffer, once?: Once): Promise<boolean> {
    return settle(() => {
      this.assertReady();
      if (once !== undefined && !this.firstTime(idempotencyKey('memory', { control: true }, once.key), once)) return false;
      this.controlHandler?.(message);
      return true;
    });
  }

  onControl(handler: ControlHandler): void {
    this.controlHandler = handler;
  }

  /** Records an idempotency key; false when it was already seen within its window. */
  private firstTime(key: string, once: Once): boolean {
    if (this.seenOnce(key) !== undefined) return false;
    this.onceKeys.set(key, { expires: Date.now() + once.windowMs });
    return true;
  }

  /** The live entry of an idempotency key, after dropping the expired ones (the oldest come first). */
  private seenOnce(key: string): { readonly expires: number; readonly position?: FramePosition } | undefined {
    const now = Date.now();
    for (const [k, entry] of this.onceKeys) {
      if (entry.expires > now) break;
      this.onceKeys.delete(k);
    }
    return this.onceKeys.get(key);
  }

  private appendNow(target: Target, frame: Buffer): number {
    this.assertReady();
    const h = this.room(target);
    h.seq++;
    const numbered = Buffer.concat([frameHead(frame), Buffer.from(`,"seq":"${h.seq}","epoch":"${h.epoch}"}`)]);
    // Broadcasts are numbered but not kept: there is no join for them, so nothing could replay them.
    if (target !== null) this.histories.keep(target, h, numbered);
    this.handler?.(target, numbered, { seq: h.seq, epoch: h.epoch });
    return h.seq;
  }

  readHistory(room: string, since: HistoryPosition | undefined, limits: ReadLimits = {}): Promise<HistoryRead> {
    return settle(() => this.readHistoryNow(room, since, limits));
  }

  private readHistoryNow(room: string, since: HistoryPosition | undefined, limits: ReadLimits): HistoryRead {
    this.assertReady();
    const h = this.room(room);
    const position = { seq: String(h.seq), epoch: h.epoch };
    const outcome = classify(since, h.epoch, h.seq, this.histories.retained(h), this.history.replayMax);
    if (outcome !== 'ok' || since === undefined) return { position, outcome, frames: [] };
    const frames = this.histories.newest(h, h.seq - Number(since.seq));
    return { position, outcome, frames: frames.slice(0, limits.limit ?? frames.length) };
  }

  /** No channels: frames never arrive from elsewhere. */
  subscribe(): Promise<void> {
    return Promise.resolve();
  }

  unsubscribe(): Promise<void> {
    return Promise.resolve();
  }

  presenceEnter(room: string, members: readonly PresenceMember[], timing: PresenceTiming, watched: boolean): Promise<number | null> {
    return settle(() => {
      this.assertReady();
      return this.presence.enter(room, members, timing, watched);
    });
  }

  /** Not refused while down: in one process nothing can disagree about who left. */
  presenceLeave(room: string, connectionIds: readonly string[]): Promise<number> {
    return settle(() => this.presence.leave(room, connectionIds));
  }

  presencePrune(room: string): Promise<number> {
    return settle(() => this.presence.prune(room));
  }

  presenceTrack(room: string, timing: PresenceTiming, phase: TrackPhase): Promise<void> {
    return settle(() => {
      this.assertReady();
      this.presence.track(room, timing, phase);
    });
  }

  presenceMembers(room: string, limit: number, timing: PresenceTiming): Promise<PresenceList | null> {
    return settle(() => {
      this.assertReady();
      return this.presence.list(room, limit, timing);
    });
  }

  presenceTracked(rooms: readonly string[]): Promise<boolean[]> {
    return settle(() => {
      this.assertReady();
      return rooms.map((room) => this.presence.tracked(room));
    });
  }

  /** Every event reaches the handler; the hub keeps those of rooms a local member watches. */
  watchPresence(): Promise<void> {
    return Promise.resolve();
  }

  unwatchPresence(): Promise<void> {
    return Promise.resolve();
  }

  onPresence(handler: PresenceHandler): void {
    this.presence.onEvent(handler);
  }

  /** Extra channels: the only instance is the only listener, so a publish comes straight back, as from Redis. */
  listen(channel: string, handler: RawHandler): Promise<void> {
    this.rawHandlers.set(channel, handler);
    return Promise.resolve();
  }

  unlisten(channel: string): Promise<void> {
    this.rawHandlers.delete(channel);
    return Promise.resolve();
  }

  publishRaw(channel: string, message: Buffer): Promise<void> {
    return settle(() => {
      this.assertReady();
      // After the caller's own synchronous work, as a message from Redis would arrive.
      const handler = this.rawHandlers.get(channel);
      if (handler === undefined) return;
      queueMicrotask(() => {
        try {
          handler(message);
        } catch (err) {
          this.logger?.error({ err, channel }, 'extra channel handler threw');
        }
      });
    });
  }

  onFrame(handler: FrameHandler): void {
    this.handler = handler;
  }

  onStateChange(listener: (status: BackplaneStatus) => void): void {
    this.listeners.add(listener);
  }

  status(): BackplaneStatus {
    return { kind: this.kind, state: this.state };
  }

  close(): Promise<void> {
    return settle(() => {
      if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
      this.histories.clear();
      this.presence.clear();
      this.rawHandlers.clear();
      this.onceKeys.clear();
      this.setState('closed');
      this.listeners.clear();
    });
  }

  private assertReady(): void {
    if (this.state !== 'ready') throw new BackplaneUnavailableError(`the in-memory backplane is ${this.state}`);
  }

  /** The target's live history, starting a new epoch when it never existed, sat idle past the TTL or was evicted. */
  private room(target: Target): RoomHistory {
    // A reserved key: room names cannot contain spaces.
    return this.histories.use(target ?? ' broadcast');
  }

  private sweep(): void {
    this.histories.sweep();
  }

  private setState(state: BackplaneState): void {
    if (this.state === state) return;
    this.state = state;
    for (const l of this.listeners) l(this.status());
  }
}

/** Runs `fn` now and wraps its outcome in a promise; a throw becomes a rejection, as from an async method. */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise((resolve) => resolve(fn()));
}
