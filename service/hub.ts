import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { BackplaneUnavailableError, type Backplane, type HistoryPosition, type HistoryRead, type Target } from './backplane/types';
import type { TokenClaims } from './auth';
import type { ServiceConfig } from './config';
import type { RelayMetrics } from './metrics';
import {
  encodeAck,
  encodeError,
  encodeMessage,
  encodePong,
  encodeWelcome,
  CLOSE_TOKEN_EXPIRED,
  parseClientFrame,
  type ClientFrame,
  type ProtocolError,
} from './protocol';
import { createTokenLifetime, type ConnectionAuth, type TokenLifetime } from './token-lifetime';

/** Rejected frames are counted over this window to tell a burst from sustained abuse. */
const REJECT_WINDOW_MS = 10_000;
/** Unacked publish bytes per connection before its socket stops being read (see trackInflight). */
const INFLIGHT_PUBLISH_BYTES = 1024 * 1024;
/** How long a socket we closed may take to finish the close handshake before it is terminated. */
const DEFAULT_CLOSE_GRACE_MS = 2_000;

/** A live frame held for a connection while its join reads the room's history. */
interface HeldFrame {
  readonly frame: Buffer;
  readonly seq: number | undefined;
}

/**
 * A connection's join in progress for one room. While the history is read, live frames are held (`queue`). After
 * the ack, frames at or before the acked position may still arrive (the subscription and the read use different
 * Redis connections, so a frame published before the read can be received after its reply): they are dropped
 * until the first newer frame shows the subscription has caught up.
 */
interface JoinState {
  queue: HeldFrame[] | null;
  /** Bytes in `queue`; bounded by the send-buffer cap like frames queued on the socket itself. */
  queuedBytes: number;
  epoch: string | undefined;
  floor: number;
}

/** One client socket and its per-connection state. */
export interface Connection {
  readonly id: string;
  readonly ws: WebSocket;
  readonly log: Logger;
  readonly rooms: Set<string>;
  /** Resolves when the socket has closed and left every room. */
  readonly closed: Promise<void>;
}

/**
 * A connection's state. Idle connections are what an instance holds most of, so nothing is allocated per connection
 * until it is needed: the child logger, the `closed` promise and the frame queue are created on first use, and the
 * socket's listeners are shared functions that find their connection through the socket.
 */
class ConnectionState implements Connection {
  readonly rooms = new Set<string>();
  tokens: number;
  lastRefill = Date.now();
  rejects = 0;
  rejectWindowStart = 0;
  /** Whether a pong arrived since the last ping. */
  alive = true;
  /** Set once we decided to close it: nothing more is sent. */
  closing = false;
  /** Set once the socket has closed and left every room. */
  removed = false;
  /** Frames of one connection are handled in arrival order: the tail of the frames still being handled, if any. */
  pending: Promise<void> | null = null;
  /** Bytes of this connection's publishes sent to the backplane and not yet acked. */
  inflightBytes = 0;
  /** Whether reading from the socket is paused until the backplane catches up. */
  readPaused = false;
  /** Whether the socket's writes are held until the current batch of deliveries is done. */
  corked = false;
  /** Terminates the socket if a close we started does not finish in time. */
  closeTimer: NodeJS.Timeout | null = null;
  /** The connection's token (sub, expiry, permissions) when token auth is on. */
  auth: ConnectionAuth | null = null;
  private childLog: Logger | null = null;
  private closedPromise: Promise<void> | null = null;
  private resolveClosed: (() => void) | null = null;

  constructor(
    readonly hub: Hub,
    readonly id: string,
    readonly ws: WebSocket,
    private readonly parentLog: Logger,
    rateBurst: number,
  ) {
    this.tokens = rateBurst;
  }

  get log(): Logger {
    this.childLog ??= this.parentLog.child({ connectionId: this.id });
    return this.childLog;
  }

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
}

/** The connection a socket belongs to, stored on the socket so its listeners can be shared functions. */
const CONNECTION = Symbol('relay.connection');
type OwnedSocket = WebSocket & { [CONNECTION]: ConnectionState };

function connectionOf(ws: WebSocket): ConnectionState {
  return (ws as OwnedSocket)[CONNECTION];
}

function onSocketMessage(this: WebSocket, data: WebSocket.RawData, isBinary: boolean): void {
  const conn = connectionOf(this);
  conn.hub.receive(conn, data, isBinary);
}

function onSocketPong(this: WebSocket): void {
  connectionOf(this).alive = true;
}

// ws reports protocol violations here (e.g. a frame over maxPayload, closed with 1009); it closes the socket itself.
function onSocketError(this: WebSocket, err: Error): void {
  connectionOf(this).log.info({ err }, 'socket error');
}

function onSocketClose(this: WebSocket, code: number, reason: Buffer): void {
  const conn = connectionOf(this);
  conn.hub.remove(conn, code, reason.toString());
}

export interface HubOptions {
  readonly config: ServiceConfig;
  readonly backplane: Backplane;
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  /** Grace before a socket we closed (slow consumer, rate abuse, drain) is terminated. @default 2000 */
  readonly closeGraceMs?: number;
}

/** Local connections and rooms; fans messages out to sockets with a send-buffer cap. */
export class Hub {
  private readonly conns = new Set<ConnectionState>();
  private readonly rooms = new Map<string, Set<ConnectionState>>();
  /** Latest subscribe call per room, so later joiners are acked only once the channel is subscribed. */
  private readonly subscriptions = new Map<string, Promise<void>>();
  /** room → connections whose join is reading history, with the live frames held for each meanwhile. */
  private readonly joining = new Map<string, Map<ConnectionState, JoinState>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private pingTimer: NodeJS.Timeout | undefined;
  /** Sockets corked in this turn of the event loop; uncorked together once its I/O has been handled. */
  private corkedConns: ConnectionState[] = [];
  private readonly closeGraceMs: number;
  /** Token expiry, refresh and permissions; null when token auth is off. */
  private readonly tokens: TokenLifetime<ConnectionState> | null;

  constructor(private readonly opts: HubOptions) {
    this.closeGraceMs = opts.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    this.tokens = createTokenLifetime<ConnectionState>(opts.config, {
      send: (conn, text) => this.send(conn, text),
      expire: (conn) => this.closeConnection(conn, CLOSE_TOKEN_EXPIRED, 'token expired'),
    });
    opts.backplane.onFrame((target, frame, seq) => this.deliverLocal(target, frame, seq));
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  get roomCount(): number {
    return this.rooms.size;
  }

  /** Starts the heartbeat: one timer for every socket rather than one per socket. */
  start(): void {
    if (this.pingTimer) return;
    this.pingTimer = setInterval(() => this.heartbeat(), this.opts.config.pingIntervalMs);
    this.pingTimer.unref();
  }

  /** Takes ownership of an upgraded socket and greets it. */
  add(ws: WebSocket, meta: { remoteAddress?: string; claims?: TokenClaims } = {}): Connection {
    const id = randomBytes(9).toString('base64url');
    const { config, logger } = this.opts;
    const conn = new ConnectionState(this, id, ws, logger, config.rateBurst);
    this.conns.add(conn);
    logger.info({ connectionId: id, remoteAddress: meta.remoteAddress }, 'connection opened');
    (ws as OwnedSocket)[CONNECTION] = conn;
    ws.on('message', onSocketMessage);
    ws.on('pong', onSocketPong);
    ws.on('error', onSocketError);
    ws.on('close', onSocketClose);
    if (meta.claims) this.tokens?.attach(conn, meta.claims);
    this.send(conn, encodeWelcome(id, config.instanceId));
    return conn;
  }

  /** Delivers a message frame to the local members of a room (or every local socket for a broadcast); returns the count. */
  deliverLocal(target: Target, frame: Buffer, seq?: number): number {
    const recipients = target === null ? this.conns : this.rooms.get(target);
    if (!recipients) return 0;
    const joins = target === null ? undefined : this.joining.get(target);
    let delivered = 0;
    for (const conn of recipients) {
      const join = joins?.get(conn);
      if (join !== undefined) {
        if (join.queue !== null) {
          join.queue.push({ frame, seq });
          join.queuedBytes += frame.length;
          if (join.queuedBytes > this.opts.config.sendBufferBytes) this.dropSlowConsumer(conn);
          continue;
        }
        if (isCovered(join, frame, seq)) continue;
        // The subscription caught up with the acked position: back to plain delivery.
        joins!.delete(conn);
        if (joins!.size === 0) this.joining.delete(target!);
      }
      this.cork(conn);
      if (this.send(conn, frame)) delivered++;
    }
    if (delivered > 0) this.opts.metrics.messagesOut.inc(delivered);
    return delivered;
  }

  /**
   * Holds a socket's writes until the current turn of the event loop has handled every socket that was ready (one
   * Redis read alone can carry many messages for the same room), so each recipient gets one write system call per turn
   * instead of one per message. The writes still count in `bufferedAmount`, so the send-buffer cap applies as before.
   */
  private cork(conn: ConnectionState): void {
    if (conn.corked) return;
    const socket = tcpSocketOf(conn.ws);
    if (!socket) return;
    socket.cork();
    conn.corked = true;
    this.corkedConns.push(conn);
    if (this.corkedConns.length === 1) setImmediate(this.uncorkAll);
  }

  private readonly uncorkAll = (): void => {
    const conns = this.corkedConns;
    this.corkedConns = [];
    for (const conn of conns) {
      conn.corked = false;
      tcpSocketOf(conn.ws)?.uncork();
    }
  };

  /**
   * Closes every socket with 1001, in batches spread over `windowMs` so reconnecting clients do not stampede the
   * remaining instances; resolves when all of them have closed.
   */
  drain(windowMs: number): Promise<void> {
    const snapshot = [...this.conns];
    if (snapshot.length === 0) return Promise.resolve();
    const batches = Math.max(1, Math.min(snapshot.length, Math.floor(windowMs / 100)));
    const perBatch = Math.ceil(snapshot.length / batches);
    const spacing = batches > 1 ? windowMs / batches : 0;
    for (let b = 0; b < batches; b++) {
      const batch = snapshot.slice(b * perBatch, (b + 1) * perBatch);
      if (batch.length === 0) break;
      const closeBatch = (): void => {
        for (const conn of batch) this.closeConnection(conn, 1001, 'server shutting down');
      };
      if (b === 0) closeBatch();
      else this.later(b * spacing, closeBatch);
    }
    return Promise.all(snapshot.map((c) => c.closed)).then(() => undefined);
  }

  /** Stops the heartbeat and pending timers and terminates every socket. */
  stop(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.tokens?.stop();
    for (const conn of this.conns) {
      conn.closing = true;
      conn.ws.terminate();
    }
  }

  /** A frame from a client socket (the socket's 'message' listener). */
  receive(conn: ConnectionState, data: WebSocket.RawData, isBinary: boolean): void {
    if (conn.closing) return;
    if (!this.takeToken(conn)) return;
    if (isBinary) {
      this.sendError(conn, { code: 'bad_frame', message: 'binary frames are not accepted; send JSON as text frames' });
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
      this.sendError(conn, parsed);
      return;
    }
    const frame = parsed.frame;
    if (conn.pending !== null) {
      this.track(conn, conn.pending.then(() => this.handle(conn, frame)));
      return;
    }
    // Nothing in progress: handle it now; only a frame that has to wait (a join) makes later frames queue behind it.
    let result: Promise<void> | undefined;
    try {
      result = this.handle(conn, frame);
    } catch (err) {
      conn.log.error({ err }, 'frame handling failed');
      return;
    }
    if (result !== undefined) this.track(conn, result);
  }

  /** Makes `work` the tail of the connection's frames in progress, until it settles. */
  private track(conn: ConnectionState, work: Promise<void>): void {
    const tail: Promise<void> = work
      .catch((err: unknown) => conn.log.error({ err }, 'frame handling failed'))
      .then(() => {
        if (conn.pending === tail) conn.pending = null;
      });
    conn.pending = tail;
  }

  /** Token bucket: every inbound frame costs one token; sustained abuse closes the socket with 1008. */
  private takeToken(conn: ConnectionState): boolean {
    const { rateLimit, rateBurst, rateLimitMaxRejects } = this.opts.config;
    const now = Date.now();
    conn.tokens = Math.min(rateBurst, conn.tokens + ((now - conn.lastRefill) / 1000) * rateLimit);
    conn.lastRefill = now;
    if (conn.tokens >= 1) {
      conn.tokens -= 1;
      return true;
    }
    if (now - conn.rejectWindowStart > REJECT_WINDOW_MS) {
      conn.rejectWindowStart = now;
      conn.rejects = 0;
    }
    conn.rejects++;
    if (conn.rejects > rateLimitMaxRejects) {
      conn.log.warn({ rejects: conn.rejects }, 'closing connection for sustained rate-limit abuse');
      this.closeConnection(conn, 1008, 'rate limit exceeded');
      return false;
    }
    this.sendError(conn, {
      code: 'rate_limited',
      message: `too many frames: at most ${rateLimit} per second (bursts of ${rateBurst}); slow down, the frame was dropped`,
    });
    return false;
  }

  /** Handles one frame; returns a promise only for a frame whose handling has to wait (a join). */
  private handle(conn: ConnectionState, frame: ClientFrame): Promise<void> | undefined {
    if (conn.closing) return undefined;
    switch (frame.type) {
      case 'ping':
        this.send(conn, encodePong(frame.id));
        return undefined;
      case 'join':
        return this.join(conn, frame.room, frame.id, frame.since);
      case 'leave':
        this.leave(conn, frame.room);
        this.send(conn, encodeAck(frame.id));
        return undefined;
      case 'publish':
        this.publish(conn, frame.room ?? null, frame.data, frame.id);
        return undefined;
      case 'refresh':
        return this.refresh(conn, frame.token, frame.id);
    }
  }

  /** Takes a new token for the connection (same sub); rooms the new token may not join are left. */
  private async refresh(conn: ConnectionState, token: string, id: string | undefined): Promise<void> {
    if (!this.tokens) {
      return this.sendError(conn, { id, code: 'bad_frame', message: 'this relay does not use tokens (RELAY_TOKEN_SECRET is unset): there is nothing to refresh' });
    }
    const result = await this.tokens.refresh(conn, token);
    if (conn.closing) return;
    if (!result.ok) return this.sendError(conn, { id, code: 'unauthorized', message: `refresh refused: ${result.reason}` });
    const left = [...conn.rooms].filter((room) => this.tokens?.refusal(conn, 'join', room));
    for (const room of left) this.leave(conn, room);
    this.send(conn, encodeAck(id, left.length > 0 ? { exp: result.exp, left } : { exp: result.exp }));
  }

  private async join(conn: ConnectionState, room: string, id: string | undefined, since: HistoryPosition | undefined): Promise<void> {
    const denied = this.tokens?.refusal(conn, 'join', room);
    if (denied) return this.sendError(conn, { id, code: 'forbidden', message: denied });
    if (!conn.rooms.has(room)) {
      const { maxRooms } = this.opts.config;
      if (conn.rooms.size >= maxRooms) {
        this.sendError(conn, {
          id,
          code: 'too_many_rooms',
          message: `this connection is already in ${conn.rooms.size} rooms (RELAY_MAX_ROOMS=${maxRooms}); leave one before joining ${JSON.stringify(room)}`,
        });
        return;
      }
      conn.rooms.add(room);
      let members = this.rooms.get(room);
      if (!members) {
        members = new Set();
        this.rooms.set(room, members);
        this.subscriptions.set(room, this.subscribe(room));
      }
      members.add(conn);
    }
    if (this.opts.backplane.historyEnabled) return this.joinWithHistory(conn, room, id, since);
    await this.subscriptions.get(room);
    // Without history nothing can be recovered: a client asking to resume learns that it did not.
    this.send(conn, encodeAck(id, since === undefined ? {} : { recovered: false }));
  }

  /**
   * Subscribe first, hold this connection's live frames, read the position (and the gap after `since`), send the
   * replay, ack, then release the held frames newer than the position: no gap, no duplicate, and a position in
   * the ack that the frames after it continue from exactly.
   */
  private async joinWithHistory(conn: ConnectionState, room: string, id: string | undefined, since: HistoryPosition | undefined): Promise<void> {
    let joins = this.joining.get(room);
    if (!joins) {
      joins = new Map();
      this.joining.set(room, joins);
    }
    const queue: HeldFrame[] = [];
    const state: JoinState = { queue, queuedBytes: 0, epoch: undefined, floor: -1 };
    joins.set(conn, state);
    let read: HistoryRead | undefined;
    try {
      await this.subscriptions.get(room);
      read = await this.opts.backplane.readHistory(room, since);
    } catch (err) {
      conn.log.warn({ err, room }, 'reading room history failed');
    }
    // The room's map may have been replaced while we waited (every member left and someone joined again).
    const current = this.joining.get(room);
    if (conn.closing || !conn.rooms.has(room) || current?.get(conn) !== state) return;
    state.queue = null;
    if (read === undefined) {
      current.delete(conn);
      if (current.size === 0) this.joining.delete(room);
    } else {
      state.epoch = read.position.epoch;
      state.floor = Number(read.position.seq);
    }

    let replayed = 0;
    if (read?.outcome === 'ok') {
      for (const frame of read.frames) if (this.send(conn, frame)) replayed++;
      if (replayed > 0) this.opts.metrics.messagesOut.inc(replayed);
    }
    if (read === undefined) {
      // Position unknown (backplane down): the client cannot resume from this join, and is told so.
      this.send(conn, encodeAck(id, since === undefined ? {} : { recovered: false }));
    } else {
      const extra: Record<string, unknown> = since === undefined ? {} : read.outcome === 'ok' ? { recovered: true, replayed } : { recovered: false };
      extra.position = read.position;
      this.send(conn, encodeAck(id, extra));
    }
    let released = 0;
    for (const h of queue) {
      // Held frames at or before the position were replayed, or precede a position the client resynchronises from.
      if (isCovered(state, h.frame, h.seq)) continue;
      if (this.send(conn, h.frame)) released++;
    }
    if (released > 0) this.opts.metrics.messagesOut.inc(released);
  }

  private leave(conn: ConnectionState, room: string): void {
    if (!conn.rooms.delete(room)) return;
    const joins = this.joining.get(room);
    if (joins?.delete(conn) === true && joins.size === 0) this.joining.delete(room);
    const members = this.rooms.get(room);
    if (!members) return;
    members.delete(conn);
    if (members.size > 0) return;
    this.rooms.delete(room);
    this.subscriptions.delete(room);
    this.opts.backplane.unsubscribe(room).catch((err: unknown) => this.opts.logger.warn({ err, room }, 'backplane unsubscribe failed'));
  }

  private subscribe(room: string): Promise<void> {
    // A failed subscribe must not fail the join: local members still get local messages, and the backplane
    // resubscribes its rooms when it reconnects.
    return this.opts.backplane.subscribe(room).catch((err: unknown) => {
      this.opts.logger.warn({ err, room }, 'backplane subscribe failed');
    });
  }

  private publish(conn: ConnectionState, room: string | null, data: unknown, id: string | undefined): void {
    const { backplane, metrics, config } = this.opts;
    const denied = this.tokens?.refusal(conn, 'publish', room);
    if (denied) return this.sendError(conn, { id, code: 'forbidden', message: denied });
    const status = backplane.status();
    if (status.state !== 'ready') {
      this.sendError(conn, {
        id,
        code: 'backplane_unavailable',
        message: `the ${status.kind} backplane is ${status.state}; the message was not delivered, retry shortly`,
      });
      return;
    }
    const frame = encodeMessage(room, data, conn.id);
    if (frame.length > config.maxPayloadBytes) {
      this.sendError(conn, {
        id,
        code: 'too_large',
        message: `the message frame would be ${frame.length} bytes, over RELAY_MAX_PAYLOAD_BYTES=${config.maxPayloadBytes}; send less data`,
      });
      return;
    }
    metrics.messagesIn.inc();
    // With history the backplane numbers the frame and hands it back through onFrame (after it is stored), so every
    // instance delivers in seq order; without history this instance delivers first and then publishes.
    if (!backplane.historyEnabled) this.deliverLocal(room, frame);
    // Not awaited: the backplane keeps command order, so later frames need not wait for this round trip.
    this.trackInflight(conn, frame.length);
    (backplane.historyEnabled ? backplane.append(room, frame) : backplane.publish(room, frame)).then(
      () => {
        this.settleInflight(conn, frame.length);
        this.send(conn, encodeAck(id));
      },
      (err: unknown) => {
        this.settleInflight(conn, frame.length);
        metrics.publishErrors.inc();
        conn.log.warn({ err }, 'backplane publish failed');
        const reason = err instanceof BackplaneUnavailableError ? err.message : `${err instanceof Error ? err.message : String(err)}; retry shortly`;
        this.sendError(conn, {
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
  private trackInflight(conn: ConnectionState, bytes: number): void {
    conn.inflightBytes += bytes;
    if (!conn.readPaused && conn.inflightBytes > INFLIGHT_PUBLISH_BYTES) {
      conn.readPaused = true;
      conn.ws.pause();
    }
  }

  private settleInflight(conn: ConnectionState, bytes: number): void {
    conn.inflightBytes -= bytes;
    if (conn.readPaused && conn.inflightBytes <= INFLIGHT_PUBLISH_BYTES / 2) {
      conn.readPaused = false;
      conn.ws.resume();
    }
  }

  /** Sends text or bytes unless the socket's send buffer would exceed the cap, in which case it is closed as a slow consumer. */
  private send(conn: ConnectionState, data: string | Buffer): boolean {
    if (conn.closing || conn.ws.readyState !== WebSocket.OPEN) return false;
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (conn.ws.bufferedAmount + len > this.opts.config.sendBufferBytes) {
      this.dropSlowConsumer(conn);
      return false;
    }
    conn.ws.send(data, { binary: false });
    return true;
  }

  private dropSlowConsumer(conn: ConnectionState): void {
    if (conn.closing) return;
    this.opts.metrics.slowConsumers.inc();
    conn.log.warn({ bufferedAmount: conn.ws.bufferedAmount }, 'closing slow consumer');
    this.closeConnection(conn, 1013, 'slow consumer');
  }

  private sendError(conn: ConnectionState, err: ProtocolError): void {
    this.opts.metrics.countError(err.code);
    this.send(conn, encodeError(err));
  }

  /** Starts the close handshake and terminates the socket if it does not finish within the grace period. */
  private closeConnection(conn: ConnectionState, code: number, reason: string): void {
    if (conn.closing) return;
    conn.closing = true;
    conn.ws.close(code, reason);
    conn.closeTimer = this.later(this.closeGraceMs, () => conn.ws.terminate());
  }

  private heartbeat(): void {
    for (const conn of this.conns) {
      if (!conn.alive) {
        conn.log.info('terminating connection: no pong since the last ping');
        conn.closing = true;
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      try {
        conn.ws.ping();
      } catch (err) {
        conn.log.debug({ err }, 'ping failed');
      }
    }
  }

  /** The socket closed (its 'close' listener): leaves every room and resolves `closed`. */
  remove(conn: ConnectionState, code: number, reason: string): void {
    if (!this.conns.delete(conn)) return;
    conn.closing = true;
    this.tokens?.detach(conn);
    if (conn.closeTimer !== null) {
      clearTimeout(conn.closeTimer);
      this.timers.delete(conn.closeTimer);
      conn.closeTimer = null;
    }
    for (const room of [...conn.rooms]) this.leave(conn, room);
    conn.log.info({ code, reason }, 'connection closed');
    conn.markRemoved();
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }
}

/** The socket under a WebSocket: ws has no public cork, and keeps it in `_socket` (null once closed). */
function tcpSocketOf(ws: WebSocket): Duplex | null | undefined {
  return (ws as WebSocket & { _socket?: Duplex | null })._socket;
}

const EPOCH_MARK = Buffer.from(',"epoch":"');

/** Whether a live frame is at or before the position a join acked (same epoch), so the client already has it or resynchronises past it. */
function isCovered(join: JoinState, frame: Buffer, seq: number | undefined): boolean {
  return join.epoch !== undefined && seq !== undefined && seq <= join.floor && frameEpoch(frame) === join.epoch;
}

/** The epoch at the end of a numbered frame (`…,"epoch":"<epoch>"}`); only read for frames held during a join. */
function frameEpoch(frame: Buffer): string | undefined {
  const at = frame.lastIndexOf(EPOCH_MARK);
  if (at < 0) return undefined;
  return frame.toString('latin1', at + EPOCH_MARK.length, frame.length - 2);
}
