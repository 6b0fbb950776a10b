/**
 * A session per connection: rate limit, ordered frame handling, dispatch and publish backpressure. Joins are in
 * join.ts, rooms and fan-out in registry.ts, and every write goes through the outbound module.
 */
import type { Logger } from 'pino';
import type WebSocket from 'ws';
import { BackplaneUnavailableError, type Backplane } from '../backplane/types';
import type { ServiceConfig } from '../config';
import type { Authenticated, ConnectionAuth, TokenLifetime } from '../token-lifetime';
import type { RelayMetrics } from '../metrics';
import { encodeAck, encodeError, encodeMessage, encodePong, parseClientFrame, type ClientFrame, type ProtocolError, type ProtocolVersion } from '../protocol';
import type { HeartbeatMember } from './heartbeat';
import { join } from './join';
import type { Presence } from './presence';
import type { Outbound, OutboundPeer } from './outbound';
import { takeToken, type TokenBucket } from './rate-limit';
import { RoomBudget, roomBudgetMessage } from './room-budget';
import type { Member, Registry } from './registry';

/** Unacked publish bytes per connection before its socket stops being read (see trackInflight). */
const INFLIGHT_PUBLISH_BYTES = 1024 * 1024;
/** The window RELAY_REPLAY_BUDGET_BYTES applies to. */
const REPLAY_BUDGET_WINDOW_MS = 60_000;

/** What sessions share: configuration, the backplane, the registry and the outbound module. */
export interface Core {
  readonly config: ServiceConfig;
  readonly backplane: Backplane;
  readonly metrics: RelayMetrics;
  readonly outbound: Outbound;
  readonly registry: Registry<Session>;
  /** Token expiry, refresh and permissions; null when token auth is off. */
  readonly tokens: TokenLifetime<Session> | null;
  /** Presence of rooms across instances; null when RELAY_PRESENCE=off. */
  readonly presence: Presence<Session> | null;
  /** Starts the close handshake (terminated after a grace if it does not finish). */
  close(session: Session, code: number, reason: string): void;
  /** Closes a session as a slow consumer (1013). */
  slowConsumer(session: Session): void;
}

/**
 * A connection's state. Idle connections are what an instance holds most of, so nothing is allocated per connection
 * until it is needed: the child logger, the `closed` promise and the frame queue are created on first use.
 */
export class Session implements Member, OutboundPeer, TokenBucket, Authenticated, HeartbeatMember {
  readonly rooms = new Set<string>();
  tokens: number;
  lastRefill = Date.now();
  rejects = 0;
  rejectWindowStart = 0;
  /** Whether a pong arrived since the last ping. */
  alive = true;
  /** When the heartbeat last pinged it (ms since the epoch); 0 before the first ping. */
  pingedAt = 0;
  /** Index in the heartbeat's current pass (core/heartbeat.ts); -1 when not in it. */
  heartbeatSlot = -1;
  closing = false;
  /** Protocol 2 sends no ack for a publish without an id (see docs/protocol.md). */
  protocol: ProtocolVersion = 1;
  corked = false;
  overSince = 0;
  /** Set once the socket has closed and left every room. */
  removed = false;
  /** Frames of one connection are handled in arrival order: the tail of the frames still being handled, if any. */
  pending: Promise<void> | null = null;
  /** Bytes of this connection's publishes sent to the backplane and not yet acked. */
  inflightBytes = 0;
  /** Whether reading from the socket is paused until the backplane catches up. */
  readPaused = false;
  /** Terminates the socket if a close we started does not finish in time. */
  closeTimer: NodeJS.Timeout | null = null;
  /** What the connection's admission counts against (its client address), released when it closes. */
  admissionKey: string | undefined = undefined;
  /** The connection's token (sub, expiry, permissions) when token auth is on. */
  auth: ConnectionAuth | null = null;
  /** Replay bytes sent in the current budget window, and when that window started. */
  replayUsed = 0;
  replayWindowStart = 0;
  /** Rooms started this interval (RELAY_ROOM_CREATE_BUDGET); created on the first join or publish. */
  private roomBudget: RoomBudget | null = null;
  private childLog: Logger | null = null;
  private closedPromise: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;

  constructor(
    readonly core: Core,
    readonly id: string,
    readonly ws: WebSocket,
    private readonly parentLog: Logger,
  ) {
    this.tokens = core.config.rateBurst;
  }

  get log(): Logger {
    this.childLog ??= this.parentLog.child({ connectionId: this.id });
    return this.childLog;
  }

  /** Resolves when the socket has closed and left every room. */
  get closed(): Promise<void> {
    if (this.closedPromise === null) {
      this.closedPromise = this.removed
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.resolveClosed = resolve;
          });
    }
    return this.closedPromise;
  }

  markRemoved(): void {
    this.removed = true;
    this.resolveClosed?.();
    this.resolveClosed = null;
  }

  /** Replay bytes this connection may still be sent in the current minute (RELAY_REPLAY_BUDGET_BYTES). */
  replayBudgetLeft(now = Date.now()): number {
    if (now - this.replayWindowStart >= REPLAY_BUDGET_WINDOW_MS) {
      this.replayWindowStart = now;
      this.replayUsed = 0;
    }
    return Math.max(0, this.core.config.replayBudgetBytes - this.replayUsed);
  }

  /** Charges a join of or publish to `room` to the room budget; sends `room_budget` and answers false when it is spent. */
  takeRoom(room: string, id: string | undefined): boolean {
    const { config } = this.core;
    this.roomBudget ??= new RoomBudget();
    if (this.roomBudget.take(room, this.rooms.has(room), config)) return true;
    this.sendError({ id, code: 'room_budget', message: roomBudgetMessage(room, config, this.roomBudget.retryAfterMs(config)) });
    return false;
  }

  chargeReplay(bytes: number): void {
    this.replayUsed += bytes;
  }

  send(data: string | Buffer): boolean {
    return this.core.outbound.send(this, data);
  }

  sendError(err: ProtocolError): void {
    this.core.metrics.countError(err.code);
    this.send(encodeError(err));
  }

  /** A frame from the client socket. */
  receive(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.closing) return;
    const verdict = takeToken(this, this.core.config);
    if (verdict === 'abuse') {
      this.log.warn({ rejects: this.rejects }, 'closing connection for sustained rate-limit abuse');
      this.core.close(this, 1008, 'rate limit exceeded');
      return;
    }
    if (verdict === 'limited') {
      const { rateLimit, rateBurst } = this.core.config;
      this.sendError({
        code: 'rate_limited',
        message: `too many frames: at most ${rateLimit} per second (bursts of ${rateBurst}); slow down, the frame was dropped`,
      });
      return;
    }
    if (isBinary) {
      this.sendError({ code: 'bad_frame', message: 'binary frames are not accepted; send JSON as text frames' });
      return;
    }
    // With the default binaryType, text frames arrive as one Buffer; the other shapes are handled for completeness.
    const text = Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Array.isArray(data)
        ? Buffer.concat(data).toString('utf8')
        : Buffer.from(data).toString('utf8');
    const parsed = parseClientFrame(text);
    if (!parsed.ok) {
      this.sendError(parsed);
      return;
    }
    const frame = parsed.frame;
    if (this.pending !== null) {
      this.track(this.pending.then(() => this.handle(frame)));
      return;
    }
    // Nothing in progress: handle it now; only a frame that has to wait (a join) makes later frames queue behind it.
    let result: Promise<void> | undefined;
    try {
      result = this.handle(frame);
    } catch (err) {
      this.log.error({ err }, 'frame handling failed');
      return;
    }
    if (result !== undefined) this.track(result);
  }

  /** Makes `work` the tail of the frames in progress, until it settles. */
  private track(work: Promise<void>): void {
    const tail: Promise<void> = work
      .catch((err: unknown) => this.log.error({ err }, 'frame handling failed'))
      .then(() => {
        if (this.pending === tail) this.pending = null;
      });
    this.pending = tail;
  }

  /** Handles one frame; returns a promise only for a frame whose handling has to wait (a join). */
  private handle(frame: ClientFrame): Promise<void> | undefined {
    if (this.closing) return undefined;
    switch (frame.type) {
      case 'ping':
        this.send(encodePong(frame.id));
        return undefined;
      case 'join':
        if (frame.presence === true && this.core.presence === null) return this.presenceDisabled(frame.id);
        return join(this.core, this, frame.room, frame.id, frame.since, frame.presence);
      case 'presence':
        if (this.core.presence === null) return this.presenceDisabled(frame.id);
        return this.core.presence.query(this, frame.room, frame.id);
      case 'leave':
        this.core.registry.leave(this, frame.room);
        this.send(encodeAck(frame.id));
        return undefined;
      case 'publish':
        this.publish(frame.room ?? null, frame.data, frame.id);
        return undefined;
      case 'refresh':
        return this.refresh(frame.token, frame.id);
    }
  }

  private presenceDisabled(id: string | undefined): undefined {
    this.sendError({
      id,
      code: 'presence_disabled',
      message: 'presence is turned off on this relay (RELAY_PRESENCE=off): no presence frames and no join with "presence": true; join without it',
    });
    return undefined;
  }

  /** Takes a new token for the connection (same sub); rooms the new token may not join are left. */
  private async refresh(token: string, id: string | undefined): Promise<void> {
    const tokens = this.core.tokens;
    if (!tokens) {
      return this.sendError({ id, code: 'bad_frame', message: 'this relay does not use tokens (RELAY_TOKEN_SECRET is unset): there is nothing to refresh' });
    }
    const result = await tokens.refresh(this, token);
    if (this.closing) return;
    if (!result.ok) return this.sendError({ id, code: 'unauthorized', message: `refresh refused: ${result.reason}` });
    const left = [...this.rooms].filter((room) => tokens.refusal(this, 'join', room));
    for (const room of left) this.core.registry.leave(this, room);
    this.send(encodeAck(id, left.length > 0 ? { exp: result.exp, left } : { exp: result.exp }));
  }

  private publish(room: string | null, data: unknown, id: string | undefined): void {
    const { backplane, metrics, config, registry } = this.core;
    const denied = this.core.tokens?.refusal(this, 'publish', room);
    if (denied) return this.sendError({ id, code: 'forbidden', message: denied });
    if (room !== null && !this.takeRoom(room, id)) return;
    const status = backplane.status();
    if (status.state !== 'ready') {
      this.sendError({
        id,
        code: 'backplane_unavailable',
        message: `the ${status.kind} backplane is ${status.state}; the message was not delivered, retry shortly`,
      });
      return;
    }
    const frame = encodeMessage(room, data, this.id);
    if (frame.length > config.maxPayloadBytes) {
      this.sendError({
        id,
        code: 'too_large',
        message: `the message frame would be ${frame.length} bytes, over RELAY_MAX_PAYLOAD_BYTES=${config.maxPayloadBytes}; send less data`,
      });
      return;
    }
    metrics.messagesIn.inc();
    // With history the backplane numbers the frame and hands it back through onFrame (after it is stored), so every
    // instance delivers in seq order; without history this instance delivers first and then publishes.
    if (!backplane.historyEnabled) registry.deliver(room, frame);
    // Not awaited: the backplane keeps command order, so later frames need not wait for this round trip.
    this.trackInflight(frame.length);
    const started = performance.now();
    (backplane.historyEnabled ? backplane.append(room, frame) : backplane.publish(room, frame)).then(
      () => {
        metrics.observePublish(performance.now() - started);
        this.settleInflight(frame.length);
        if (id !== undefined || this.protocol === 1) this.send(encodeAck(id));
      },
      (err: unknown) => {
        this.settleInflight(frame.length);
        metrics.publishErrors.inc();
        this.log.warn({ err }, 'backplane publish failed');
        const reason = err instanceof BackplaneUnavailableError ? err.message : `${err instanceof Error ? err.message : String(err)}; retry shortly`;
        this.sendError({
          id,
          code: 'backplane_unavailable',
          message: `${backplane.historyEnabled ? 'the message was not delivered' : 'the message reached this instance only'}: ${reason}`,
        });
      },
    );
  }

  /**
   * Backpressure towards a publisher that outpaces the backplane: past the in-flight cap its socket is not read
   * (TCP pushes back on the client) until half of it is acked, so unacked publishes cannot grow memory without bound.
   */
  private trackInflight(bytes: number): void {
    this.inflightBytes += bytes;
    if (!this.readPaused && this.inflightBytes > INFLIGHT_PUBLISH_BYTES) {
      this.readPaused = true;
      this.ws.pause();
    }
  }

  private settleInflight(bytes: number): void {
    this.inflightBytes -= bytes;
    if (this.readPaused && this.inflightBytes <= INFLIGHT_PUBLISH_BYTES / 2) {
      this.readPaused = false;
      this.ws.resume();
    }
  }
}
