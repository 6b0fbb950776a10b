/**
 * The relay core's entry: takes upgraded sockets, wires each to a session (core/session.ts), the registry of rooms
 * and local fan-out (core/registry.ts) and the outbound module (core/outbound.ts); runs the heartbeat and the drain.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type WebSocket from 'ws';
import type { TokenClaims } from './auth';
import type { Backplane, BackplaneState, PresenceList } from './backplane/types';
import type { ServiceConfig } from './config';
import { HeartbeatPasses } from './core/heartbeat';
import { Outbound } from './core/outbound';
import { Presence } from './core/presence';
import { Registry } from './core/registry';
import { Session, type Core } from './core/session';
import type { RelayMetrics } from './metrics';
import { CLOSE_DISCONNECTED, CLOSE_TOKEN_EXPIRED, encodeWelcome, type ProtocolVersion } from './protocol';
import { UserIndex } from './core/user-index';
import { createTokenLifetime } from './token-lifetime';

/** How long a socket we closed may take to finish the close handshake before it is terminated. */
const DEFAULT_CLOSE_GRACE_MS = 2_000;
/** A slow consumer's close handshake gets this many close graces before it must show progress. */
const SLOW_CONSUMER_GRACE_FACTOR = 5;
/** How many more grace periods a closing socket gets while its backlog keeps shrinking. */
const MAX_CLOSE_EXTENSIONS = 10;
/** The heartbeat visits a slice of the connections this many times per interval, never all of them at once. */
const HEARTBEAT_SLICES = 25;
/** Most live frames a room holds while it catches up from the history; newer ones are read from the history again. */
const MAX_HELD_FRAMES = 10_000;

/** One client socket, as the server sees it. */
export interface Connection {
  readonly id: string;
  readonly ws: WebSocket;
  readonly log: Logger;
  readonly rooms: Set<string>;
  /** Resolves when the socket has closed and left every room. */
  readonly closed: Promise<void>;
}

export interface HubOptions {
  readonly config: ServiceConfig;
  readonly backplane: Backplane;
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  /** Grace before a socket we closed (slow consumer, rate abuse, drain) is terminated. @default 2000 */
  readonly closeGraceMs?: number;
  /** Ends the admission of a connection added with an `admissionKey`, once, when it has closed. */
  readonly release?: (admissionKey: string) => void;
}

/** The session a socket belongs to, stored on the socket so its listeners can be shared functions. */
const SESSION = Symbol('relay.session');
type OwnedSocket = WebSocket & { [SESSION]: Session };

function sessionOf(ws: WebSocket): Session {
  return (ws as OwnedSocket)[SESSION];
}

function onSocketMessage(this: WebSocket, data: WebSocket.RawData, isBinary: boolean): void {
  sessionOf(this).receive(data, isBinary);
}

function onSocketPong(this: WebSocket): void {
  sessionOf(this).alive = true;
}

// ws reports protocol violations here (e.g. a frame over maxPayload, closed with 1009); it closes the socket itself.
function onSocketError(this: WebSocket, err: Error): void {
  sessionOf(this).log.info({ err }, 'socket error');
}

function onSocketClose(this: WebSocket, code: number, reason: Buffer): void {
  const session = sessionOf(this);
  (session.core as HubCore).hub.remove(session, code, reason.toString());
}

interface HubCore extends Core {
  readonly hub: Hub;
}

/** Local connections and rooms; fans messages out to sockets with a send-buffer cap. */
export class Hub {
  private readonly core: HubCore;
  private readonly registry: Registry<Session>;
  private readonly outbound: Outbound;
  /** Connections by user (token `sub`), for the server API. */
  private readonly users = new UserIndex<Session>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly heartbeat: HeartbeatPasses<Session>;
  private readonly closeGraceMs: number;
  /** One heartbeat tick: a pass of HEARTBEAT_SLICES ticks spans a ping interval. */
  private readonly heartbeatTickMs: number;
  private backplaneState: BackplaneState;

  constructor(private readonly opts: HubOptions) {
    this.closeGraceMs = opts.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    this.heartbeatTickMs = Math.max(1, Math.floor(opts.config.pingIntervalMs / HEARTBEAT_SLICES));
    const { config, backplane, metrics, logger } = opts;
    this.outbound = new Outbound({
      capBytes: config.sendBufferBytes,
      onSlowConsumer: (peer) => this.slowConsumer(peer as Session),
    });
    this.registry = new Registry<Session>({
      backplane,
      metrics,
      logger,
      send: (session, data) => this.outbound.send(session, data),
      onOverflow: (session) => this.slowConsumer(session),
      maxHeldFrames: MAX_HELD_FRAMES,
      onLeave: (session, room) => this.core.presence?.leave(session, room),
    });
    // Token expiry, refresh and permissions; null when token auth is off.
    const tokens = createTokenLifetime<Session>(config, {
      send: (session, text) => this.outbound.send(session, text),
      expire: (session) => {
        metrics.tokensExpired.inc();
        session.log.info('closing connection: its token expired and was not refreshed');
        this.closeSession(session, CLOSE_TOKEN_EXPIRED, 'token expired');
      },
    });
    this.heartbeat = new HeartbeatPasses<Session>({
      slices: HEARTBEAT_SLICES,
      members: () => this.registry.members,
      visit: (session) => this.ping(session),
    });
    this.core = {
      hub: this,
      tokens,
      config,
      backplane,
      metrics,
      outbound: this.outbound,
      registry: this.registry,
      presence: config.presence ? new Presence<Session>({ config, backplane, logger, send: (session, data) => this.outbound.send(session, data) }) : null,
      close: (session, code, reason) => this.closeSession(session, code, reason),
      slowConsumer: (session) => this.slowConsumer(session),
    };
    backplane.onFrame((target, frame, position) => this.registry.deliver(target, frame, position));
    this.backplaneState = backplane.status().state;
    backplane.onStateChange((status) => {
      const was = this.backplaneState;
      this.backplaneState = status.state;
      if (status.state !== 'ready' || was !== 'down') return;
      // Frames published while the subscription was down are only in the history: every room reads them.
      if (backplane.historyEnabled) this.registry.catchUpAll();
      // A presence start (`track`) sent meanwhile never arrived: presence reads the markers of its rooms.
      void this.core.presence?.resync();
    });
  }

  get connectionCount(): number {
    return this.registry.members.size;
  }

  get roomCount(): number {
    return this.registry.rooms.size;
  }

  /** Starts the heartbeat: one timer for every socket, visiting a slice of them per tick. */
  start(): void {
    if (this.pingTimer) return;
    this.pingTimer = setInterval(() => this.heartbeat.tick(), this.heartbeatTickMs);
    this.pingTimer.unref();
    this.core.presence?.start();
  }

  /** Takes ownership of an upgraded socket and greets it. */
  add(ws: WebSocket, meta: { remoteAddress?: string; claims?: TokenClaims; protocol?: ProtocolVersion; admissionKey?: string } = {}): Connection {
    const id = randomBytes(9).toString('base64url');
    const { config, logger } = this.opts;
    const session = new Session(this.core, id, ws, logger);
    this.registry.members.add(session);
    logger.info({ connectionId: id, remoteAddress: meta.remoteAddress }, 'connection opened');
    (ws as OwnedSocket)[SESSION] = session;
    ws.on('message', onSocketMessage);
    ws.on('pong', onSocketPong);
    ws.on('error', onSocketError);
    ws.on('close', onSocketClose);
    if (meta.claims) this.core.tokens?.attach(session, meta.claims);
    this.users.add(session, session.auth?.sub);
    session.protocol = meta.protocol ?? 1;
    session.admissionKey = meta.admissionKey;
    session.send(encodeWelcome(id, config.instanceId, session.protocol));
    return session;
  }

  /** Members of a room on this instance. */
  roomMembers(room: string): number {
    return this.registry.rooms.get(room)?.members.size ?? 0;
  }

  /** An instance (this one too) started tracking the room's presence: records the local members (none with RELAY_PRESENCE=off). */
  recordPresence(room: string): Promise<number> {
    return this.core.presence?.record(room) ?? Promise.resolve(0);
  }

  /** The room's presence on every instance; refused with RELAY_PRESENCE=off. */
  listPresence(room: string, limit: number): Promise<PresenceList> {
    if (this.core.presence === null) return Promise.reject(new Error('presence is turned off on this relay (RELAY_PRESENCE=off); ask without ?members=1'));
    return this.core.presence.list(room, limit);
  }

  /** Starts of presence tracking reach every instance through the control channel. */
  useControl(control: { trackPresence(room: string): Promise<unknown> }): void {
    this.core.presence?.useGather((room) => control.trackPresence(room));
  }

  /** Delivers a frame to this instance's members of a room (or every connection: null), as the backplane does. */
  deliver(room: string | null, frame: Buffer): number {
    return this.registry.deliver(room, frame);
  }

  /** Sends a frame to every local connection of a user (the token's `sub`); returns how many were sent it. */
  deliverToUser(user: string, frame: string | Buffer): number {
    let sent = 0;
    for (const session of this.users.of(user)) if (session.send(frame)) sent++;
    if (sent > 0) this.opts.metrics.messagesOut.inc(sent);
    return sent;
  }

  /**
   * Closes the local connections of a user, or one connection by id, with CLOSE_DISCONNECTED (the client must not
   * reconnect); returns how many were closed.
   */
  disconnect(target: { readonly user: string } | { readonly connectionId: string }): number {
    // By id: a scan, not a map kept per connection (idle connections are what an instance holds most of).
    const sessions = 'user' in target ? this.users.of(target.user) : [...this.registry.members].filter((s) => s.id === target.connectionId);
    let closed = 0;
    for (const session of sessions) {
      if (session === undefined || session.closing) continue;
      session.log.info('closing connection: disconnected through the server API');
      this.closeSession(session, CLOSE_DISCONNECTED, 'disconnected by the server');
      closed++;
    }
    return closed;
  }

  /**
   * Closes every socket with 1001, in batches spread over `windowMs` so reconnecting clients do not stampede the
   * remaining instances; resolves when all of them have closed.
   */
  drain(windowMs: number): Promise<void> {
    const snapshot = [...this.registry.members];
    if (snapshot.length === 0) return Promise.resolve();
    const batches = Math.max(1, Math.min(snapshot.length, Math.floor(windowMs / 100)));
    const perBatch = Math.ceil(snapshot.length / batches);
    const spacing = batches > 1 ? windowMs / batches : 0;
    for (let b = 0; b < batches; b++) {
      const batch = snapshot.slice(b * perBatch, (b + 1) * perBatch);
      if (batch.length === 0) break;
      const closeBatch = (): void => {
        for (const session of batch) this.closeSession(session, 1001, 'server shutting down');
      };
      if (b === 0) closeBatch();
      else this.later(b * spacing, closeBatch);
    }
    return Promise.all(snapshot.map((s) => s.closed)).then(() => undefined);
  }

  /** Stops the heartbeat and pending timers and terminates every socket. */
  stop(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.outbound.stop();
    this.core.tokens?.stop();
    for (const session of this.registry.members) {
      session.closing = true;
      session.ws.terminate();
    }
  }

  /** Removes this instance's members from presence (with their `left` events); before the backplane closes. */
  closePresence(): Promise<void> {
    return this.core.presence?.close() ?? Promise.resolve();
  }

  /** The socket closed (its 'close' listener): leaves every room and resolves `closed`. */
  remove(session: Session, code: number, reason: string): void {
    if (!this.registry.members.delete(session)) return;
    this.users.remove(session, session.auth?.sub);
    session.closing = true;
    this.core.tokens?.detach(session);
    this.heartbeat.remove(session);
    if (session.closeTimer !== null) {
      clearTimeout(session.closeTimer);
      this.timers.delete(session.closeTimer);
      session.closeTimer = null;
    }
    for (const room of [...session.rooms]) this.registry.leave(session, room);
    session.log.info({ code, reason }, 'connection closed');
    if (session.admissionKey !== undefined) this.opts.release?.(session.admissionKey);
    session.markRemoved();
  }

  private slowConsumer(session: Session): void {
    if (session.closing) return;
    this.opts.metrics.slowConsumers.inc();
    session.log.warn({ bufferedAmount: session.ws.bufferedAmount }, 'closing slow consumer');
    // Its backlog sits in kernel buffers too: a reader that resumes needs time to reach the close frame.
    this.closeSession(session, 1013, 'slow consumer', this.closeGraceMs * SLOW_CONSUMER_GRACE_FACTOR);
  }

  /**
   * Starts the close handshake and terminates the socket once it makes no progress for the grace period: a client
   * still reading its backlog (a slow consumer that resumed) gets to the close frame and sees the close code.
   */
  private closeSession(session: Session, code: number, reason: string, graceMs = this.closeGraceMs): void {
    if (session.closing) return;
    session.closing = true;
    session.ws.close(code, reason);
    let backlog = session.ws.bufferedAmount;
    let extensions = 0;
    const check = (): void => {
      const now = session.ws.bufferedAmount;
      // Still shrinking, or just flushed (the client may still be reading the close frame from its kernel buffer).
      const progressing = now < backlog || (now === 0 && backlog > 0);
      if (progressing && extensions++ < MAX_CLOSE_EXTENSIONS) {
        backlog = now;
        session.closeTimer = this.later(this.closeGraceMs, check);
        return;
      }
      session.ws.terminate();
    };
    session.closeTimer = this.later(graceMs, check);
  }

  private ping(session: Session): void {
    if (session.closing) return;
    // A backstop: a connection sits earlier in the next pass when connections before it closed, so a visit can come
    // well before its ping is an interval old. One tick of slack: passes start an interval apart give or take the
    // clocks' rounding, and a visit a millisecond early must not skip a whole pass.
    const now = Date.now();
    if (now - session.pingedAt < this.opts.config.pingIntervalMs - this.heartbeatTickMs) return;
    if (!session.alive) {
      session.log.info('terminating connection: no pong since the last ping');
      session.closing = true;
      session.ws.terminate();
      return;
    }
    session.alive = false;
    session.pingedAt = now;
    try {
      session.ws.ping();
    } catch (err) {
      session.log.debug({ err }, 'ping failed');
    }
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
