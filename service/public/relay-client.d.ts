/** Types for relay-client.js (the relay's browser/Node client). */

/** Position of the newest message seen in a room; sent back as `since` when rejoining after a reconnect. */
export interface RelayPosition {
  /** Decimal string; "0" before the room's first message. */
  readonly seq: string;
  readonly epoch: string;
}

/** The relay's first frame on every connection, plus the URL it arrived on. */
export interface RelayWelcome {
  readonly connectionId: string;
  readonly instanceId: string;
  /** The protocol version the relay speaks on this connection: 2 (the client asks for it with `?protocol=2`), or 1 from a relay that predates protocol 2. */
  readonly protocol: number;
  readonly url: string;
}

/** A published message delivered by the relay. `seq`/`epoch` are present only when message recovery is on. */
export interface RelayMessage {
  readonly type: 'message';
  /** Absent for broadcasts (publish without a room) and messages to a user. */
  readonly room?: string;
  /** Present on a message the server API sent to this connection's user (the token's `sub`). */
  readonly user?: string;
  readonly data: unknown;
  /** connectionId of the publisher; `"server"` for messages published through the server API. */
  readonly from: string;
  /** Position in the room's history (decimal string); broadcasts carry their own sequence. */
  readonly seq?: string;
  readonly epoch?: string;
}

/** The relay's answer to join / leave / publish. */
export interface RelayAck {
  readonly type: 'ack';
  readonly id: string;
  /** On a rejoin with `since`: whether the relay could replay everything missed. */
  readonly recovered?: boolean;
  /**
   * On a rejoin with `since` answered `recovered: false`: why (epoch, trimmed, cap, budget, future, unavailable, disabled;
   * see docs/recovery.md).
   */
  readonly reason?: string;
  /** On a rejoin with `since`: how many messages were replayed (they arrive before the ack). */
  readonly replayed?: number;
  /** On every join when recovery is on: the room's position; the messages after it follow the ack. */
  readonly position?: RelayPosition;
  /** On a refresh: the new token's `exp` (seconds since the epoch), absent when it has none. */
  readonly exp?: number;
  /** On a refresh: rooms the new token may not join, which the connection has left. */
  readonly left?: readonly string[];
}

/** A rejoin whose gap the relay could not fill: the app must reload the room's state; delivery continues after `position`. */
export interface RelayResyncEvent {
  readonly room: string;
  /** What the client asked to resume from, or the last position it had (absent when it had none). */
  readonly since?: RelayPosition;
  /** Where the relay continues from (absent when the backplane was unavailable). */
  readonly position?: RelayPosition;
  /**
   * Why: the rejoin ack's reason (epoch, trimmed, cap, budget, future, unavailable, disabled) or the relay's resync
   * frame's (epoch, lost); see docs/recovery.md.
   */
  readonly reason?: string;
}

/** A member of a room on any instance (presence). */
export interface RelayPresenceMember {
  /** The member's connection (its welcome's `connectionId`). */
  readonly connectionId: string;
  /** The `sub` of the member's token; null without token auth. */
  readonly user: string | null;
  /** The relay instance the member is connected to. */
  readonly instanceId: string;
  /** When the member joined, in milliseconds since the epoch. */
  readonly since: number;
}

/** The relay's answer to presence(room). */
export interface RelayPresence {
  readonly type: 'presence';
  readonly id: string;
  readonly room: string;
  /** At most the relay's RELAY_PRESENCE_LIST_MAX members. */
  readonly members: readonly RelayPresenceMember[];
  /** The exact number of members on every instance. */
  readonly count: number;
}

/** A member joined or left a room this client joined with `{ presence: true }`. */
export interface RelayPresenceEvent {
  readonly room: string;
  readonly member: RelayPresenceMember;
}

export interface RelayJoinOptions {
  /** true: emit the room's `joined` / `left` events (kept across reconnects); false: stop them. @default unchanged (off on a first join) */
  readonly presence?: boolean;
}

/**
 * Every error the client rejects with or emits. `code` is the relay's error code (bad_json, bad_frame, unknown_type,
 * invalid_room, too_large, rate_limited, too_many_rooms, room_budget, unauthorized, forbidden, presence_disabled, backplane_unavailable) or one of the
 * client's own: invalid_option, invalid_argument, not_connected, disconnected, disconnected_by_server, closed, timeout, connect_timeout,
 * connect_failed, socket_error, listener_error, unknown_error, token_failed (getToken() threw, rejected or returned no
 * string), token_expiring (the relay says the token expires and there is no getToken to refresh it).
 */
export interface RelayError extends Error {
  readonly code: string;
  readonly cause?: unknown;
}

export type RelayState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface RelayCloseEvent {
  readonly code: number | undefined;
  readonly reason: string;
  readonly url: string | undefined;
  /** false after close(), and after the relay closed the connection with 4003 (disconnected by the server). */
  readonly willReconnect: boolean;
  /**
   * true when the application's backend ended the connection through the server API (close code 4003): the client is
   * closed for good and does not reconnect.
   */
  readonly disconnected?: boolean;
}

export interface RelayReconnectingEvent {
  /** 1 for the first retry after a loss; reset once a connection opens. */
  readonly attempt: number;
  readonly delayMs: number;
  /** The URL the next attempt will use. */
  readonly url: string;
}

export interface RelayClientEvents {
  /** The welcome arrived and every room was rejoined. */
  open: RelayWelcome;
  message: RelayMessage;
  close: RelayCloseEvent;
  reconnecting: RelayReconnectingEvent;
  error: RelayError;
  state: RelayState;
  /** A rejoin after a reconnect could not replay what was missed. */
  resync: RelayResyncEvent;
  /** A member joined a room joined with `{ presence: true }` (this client's own join included). */
  joined: RelayPresenceEvent;
  /** A member left such a room: left, disconnected, or its instance died (then within RELAY_PRESENCE_TTL_MS). */
  left: RelayPresenceEvent;
}

export interface RelayBackoffOptions {
  /**
   * Delay ceiling before the first retry, doubled per attempt; the actual delay is a random value between half the ceiling and the ceiling.
   * @default 250
   */
  readonly initialMs?: number;
  /**
   * Largest delay ceiling between retries.
   * @default 10000
   */
  readonly maxMs?: number;
}

export interface RelayClientOptions {
  /** Relay WebSocket URLs (ws:// or wss://), tried in order; each failure moves on to the next. */
  readonly urls: readonly string[];
  /**
   * WebSocket constructor: the browser's, or `require('ws')` in Node (required there: Node 20 has no global WebSocket).
   * @default globalThis.WebSocket
   */
  readonly WebSocket?: new (url: string) => unknown;
  /** Reconnect backoff. */
  readonly backoff?: RelayBackoffOptions;
  /**
   * How long join / leave / publish / ping wait for the relay's answer before rejecting with code "timeout".
   * @default 10000
   */
  readonly requestTimeoutMs?: number;
  /**
   * How long a new connection may take to deliver the welcome frame before it counts as failed.
   * @default 10000
   */
  readonly connectTimeoutMs?: number;
  /**
   * Returns a token (or a promise of one) for the relay's RELAY_TOKEN_SECRET. Called before every connection and
   * reconnection (the token goes in the URL as `?token=`) and when the relay sends `token_expiring` (the token goes
   * in a `refresh` frame), so a connection outlives its tokens.
   * @default none: the URLs are used as given
   */
  readonly getToken?: () => string | Promise<string>;
}

export declare class RelayClient {
  constructor(options: RelayClientOptions);
  /** The URLs in the order they are tried. */
  readonly urls: readonly string[];
  readonly state: RelayState;
  /** URL of the current (or last) connection. */
  readonly url: string | undefined;
  /** Welcome of the current (or last) connection. */
  readonly welcome: RelayWelcome | undefined;
  on<E extends keyof RelayClientEvents>(event: E, listener: (payload: RelayClientEvents[E]) => void): this;
  off<E extends keyof RelayClientEvents>(event: E, listener: (payload: RelayClientEvents[E]) => void): this;
  /** Starts connecting; resolves once open (rooms rejoined). Rejects only if close() comes first. */
  connect(): Promise<RelayWelcome>;
  join(room: string, options?: RelayJoinOptions): Promise<RelayAck>;
  /** The room's members on every instance; the client must be in the room (else rejects with code "forbidden"). */
  presence(room: string): Promise<RelayPresence>;
  leave(room: string): Promise<RelayAck>;
  /** `room` null broadcasts to every client on every instance. */
  publish(room: string | null, data: unknown): Promise<RelayAck>;
  /** Resolves with the round-trip time in milliseconds. */
  ping(): Promise<number>;
  /** Sends a new token from getToken() on the open connection; done by itself on `token_expiring`. */
  refreshToken(): Promise<RelayAck>;
  /** Closes for good: no reconnect; pending requests reject with code "closed". */
  close(): void;
  /** Rooms that are rejoined after a reconnect. */
  rooms(): string[];
}
