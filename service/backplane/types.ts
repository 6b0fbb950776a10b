/**
 * The contract between the hub (local sockets and rooms) and a backplane (how instances reach each other).
 *
 * A backplane moves opaque, already-serialised client frames between instances. The publishing
 * instance builds the exact `message` frame once; every receiving instance forwards those bytes to
 * its local members without parsing or re-serialising them.
 */

import type { HistoryPosition, HistoryRead, ReadLimits } from './history';
import type { PresenceMember } from '../protocol';

/** `connecting` before the first connection, `ready` when publish and subscribe work, `down` while reconnecting, `closed` after close(). */
export type BackplaneState = 'connecting' | 'ready' | 'down' | 'closed';

/** Room name, or null for the broadcast channel (every client on every instance). */
export type Target = string | null;

/** Where a numbered frame sits in its room's history, carried beside the frame's bytes. */
export interface FramePosition {
  readonly seq: number;
  readonly epoch: string;
}

/**
 * Called for every frame to deliver locally: frames published by other instances and, with history on, this
 * instance's own numbered frames too. `frame` is the client-ready JSON text as UTF-8 bytes; `position` is the
 * frame's place in its room's history (undefined with history off).
 */
export type FrameHandler = (target: Target, frame: Buffer, position?: FramePosition) => void;

/** Called with the bytes of every message on an extra channel (see Backplane.listen), exactly as published. */
export type RawHandler = (message: Buffer) => void;

/** An idempotency key of the server API and how long it is remembered. */
export interface Once {
  readonly key: string;
  readonly windowMs: number;
}

/** What an append made once per idempotency key returns: the message's position, or the first one's (`duplicate`). */
export interface OnceAppend {
  readonly position: FramePosition;
  /** The key was seen within its window: nothing was stored or published, `position` is the first publish's. */
  readonly duplicate: boolean;
}

/** Called for every control message (server API requests between instances), this instance's own included. */
export type ControlHandler = (message: Buffer) => void;

export interface BackplaneStatus {
  readonly kind: 'memory' | 'redis' | 'cluster';
  readonly state: BackplaneState;
  /** Human-readable reason for the last failure, if any. */
  readonly lastError?: string;
}

export interface Backplane {
  readonly kind: BackplaneStatus['kind'];
  /** Connects and subscribes to the broadcast channel. Resolves once ready, or rejects with a clear error. */
  start(): Promise<void>;
  /** Publishes a frame (client-ready JSON bytes) to other instances. Rejects with BackplaneUnavailableError while down. */
  publish(target: Target, frame: Buffer): Promise<void>;
  /** Whether rooms have a history (RELAY_HISTORY_SIZE > 0): publish through append(), join through readHistory(). */
  readonly historyEnabled: boolean;
  /**
   * History on: numbers the frame (seq, epoch), stores it in the target's history and publishes it, atomically.
   * `frame` is the complete message frame without seq/epoch; the stored and delivered frame ends with
   * `,"seq":"…","epoch":"…"}`. Every instance, this one included, receives the numbered frame through the
   * onFrame handler, in seq order. Resolves with the seq. Rejects with BackplaneUnavailableError while down.
   */
  append(target: Target, frame: Buffer): Promise<number>;
  /**
   * History on: the room's current position (creating its epoch if it has none) and, when `since` is given and
   * the gap can be filled (and fits `limits.maxBytes`), the frames after it in order, at most `limits.limit` of
   * them. Rejects with BackplaneUnavailableError while down.
   */
  readHistory(room: string, since: HistoryPosition | undefined, limits?: ReadLimits): Promise<HistoryRead>;
  /**
   * History on: append() made once per idempotency key, atomically with it (one script, the key in the target's hash
   * slot). `once` undefined appends unconditionally. Resolves with the position (the first one for a duplicate).
   */
  appendOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<OnceAppend>;
  /**
   * History off: publish() made once per idempotency key, atomically with it. Resolves true when published, false
   * for a duplicate (nothing published).
   */
  publishOnce(target: Target, frame: Buffer, once: Once | undefined): Promise<boolean>;
  /**
   * Publishes a control message to every instance, this one included (through onControl), once per idempotency key
   * when `once` is given. Resolves true when published, false for a duplicate.
   */
  publishControl(message: Buffer, once?: Once): Promise<boolean>;
  /** Registers the single handler for control messages. */
  onControl(handler: ControlHandler): void;
  /** Subscribes to a room's channel; called by the hub on the room's first local member. */
  subscribe(room: string): Promise<void>;
  /** Unsubscribes from a room's channel; called by the hub after the room's last local member left. */
  unsubscribe(room: string): Promise<void>;
  /**
   * Presence (every instance's members of a room, see presence-store.ts), kept only for rooms somebody asked about:
   * a room is *tracked* while its marker lives (presenceTrack). In a tracked room, adds or refreshes local members'
   * entries, each living `timing.lifetimeMs` from now; a member that was not there yet is announced with a `joined`
   * event on the room's presence channel; `watched` (a local member watches the room) keeps the marker alive for
   * `timing.keyTtlMs`. Resolves with the number of new members, or null when the room is not tracked (then nothing
   * is stored, and the given members' entries are removed without events).
   */
  presenceEnter(room: string, members: readonly PresenceMember[], timing: PresenceTiming, watched: boolean): Promise<number | null>;
  /** Removes members' entries; each one removed is announced with exactly one `left` event. Resolves with how many were. */
  presenceLeave(room: string, connectionIds: readonly string[]): Promise<number>;
  /** Removes entries whose lifetime ended (their instance stopped refreshing them), with one `left` event each. */
  presencePrune(room: string): Promise<number>;
  /**
   * Sets the room's tracked marker for `timing.keyTtlMs`: `pending` (unless it is there already) before the instances
   * are asked to record their members, `ready` once they have.
   */
  presenceTrack(room: string, timing: PresenceTiming, phase: TrackPhase): Promise<void>;
  /**
   * The exact count and at most `limit` of the room's members, keeping its marker alive; null unless the marker is
   * `ready` (nobody asked yet, or the instances are still recording their members).
   */
  presenceMembers(room: string, limit: number, timing: PresenceTiming): Promise<PresenceList | null>;
  /**
   * Whether each room's tracked marker exists (`pending` or `ready`), in the order given: one read per room, sent
   * together (each on its room's node in a cluster). Rejects with BackplaneUnavailableError while down.
   */
  presenceTracked(rooms: readonly string[]): Promise<boolean[]>;
  /** Subscribes to the room's presence channel (joined/left events, handed to onPresence); called while a local member watches. */
  watchPresence(room: string): Promise<void>;
  /** Unsubscribes from the room's presence channel. */
  unwatchPresence(room: string): Promise<void>;
  /** Registers the single handler for joined/left events (client-ready frames) of watched rooms. */
  onPresence(handler: PresenceHandler): void;
  /**
   * Subscribes an extra channel (extraChannel, roomExtraChannel), kept across reconnects like a room's; every
   * message published on it, by any instance this one included, goes to `handler` as raw bytes. One handler per
   * channel; a second listen replaces it. Never rejects while down.
   */
  listen(channel: string, handler: RawHandler): Promise<void>;
  /** Stops listening to an extra channel. */
  unlisten(channel: string): Promise<void>;
  /** Publishes raw bytes on an extra channel. Rejects with BackplaneUnavailableError while down. */
  publishRaw(channel: string, message: Buffer): Promise<void>;
  /** Registers the single handler for frames from other instances. */
  onFrame(handler: FrameHandler): void;
  /** Registers a listener for state changes (ready/down/…). */
  onStateChange(listener: (status: BackplaneStatus) => void): void;
  status(): BackplaneStatus;
  /** Closes every connection and timer it opened. Idempotent. */
  close(): Promise<void>;
}

/** Thrown by publish/subscribe while the backplane cannot reach its store. */
export class BackplaneUnavailableError extends Error {
  readonly code = 'backplane_unavailable';
  constructor(message = 'the message backplane is unavailable; retry shortly') {
    super(message);
    this.name = 'BackplaneUnavailableError';
  }
}

export type { HistoryPosition, HistoryRead, ReadLimits, RecoveryOutcome } from './history';
export type { PresenceMember } from '../protocol';

/** Called with a `joined`/`left` event of a watched room, as client-ready JSON bytes. */
export type PresenceHandler = (room: string, frame: Buffer) => void;

/** A presence read: the exact number of members and the first of them, up to the read's limit. */
export interface PresenceList {
  readonly count: number;
  readonly members: readonly PresenceMember[];
}

/** A tracked marker's state: `pending` while the instances record their members, `ready` once they have. */
export type TrackPhase = 'pending' | 'ready';

/** How long presence entries live and how often they are refreshed and pruned; see presenceTiming(). */
export interface PresenceTiming {
  /** RELAY_PRESENCE_TTL_MS: a member of a dead instance is gone (and its `left` sent) within this long. */
  readonly ttlMs: number;
  /** An entry expires this long after its last refresh. */
  readonly lifetimeMs: number;
  /** Every instance refreshes its members' entries and prunes its watched rooms this often. */
  readonly tickMs: number;
  /**
   * The room's keys expire this long after the last refresh, so a room whose instances all died leaves nothing behind;
   * its tracked marker lives this long after the last watcher's refresh or query.
   */
  readonly keyTtlMs: number;
}

/**
 * Refreshed every tick (ttl/5) and living 3/4 of the ttl, an entry outlives two missed refreshes, and a dead instance's
 * member expires within 3/4 ttl of its last refresh and is pruned at most a tick later: gone within the ttl.
 */
export function presenceTiming(ttlMs: number): PresenceTiming {
  return { ttlMs, lifetimeMs: Math.floor((ttlMs * 3) / 4), tickMs: Math.max(1, Math.floor(ttlMs / 5)), keyTtlMs: ttlMs * 2 };
}

/** A room's presence channel: joined/left events, subscribed only by instances with a local member watching. */
export function presenceChannel(prefix: string, room: string): string {
  return `${prefix}:presence-events:{${room}}`;
}

/** Channel names shared by every backplane implementation; the prefix isolates apps sharing one Redis. */
export function roomChannel(prefix: string, room: string): string {
  // The hash tag keeps a room's channel and any per-room keys on one cluster slot.
  return `${prefix}:room:{${room}}`;
}

export function broadcastChannel(prefix: string): string {
  return `${prefix}:broadcast`;
}

/** The channel of the server API's control messages, which every instance subscribes to like the broadcast channel. */
export function controlChannel(prefix: string): string {
  return `${prefix}:control`;
}

/**
 * Where an idempotency key is kept: in the hash slot of what it guards (the room's keys, the broadcast keys, or the
 * control channel), so the script that checks it and publishes runs on one cluster node.
 */
export function idempotencyKey(prefix: string, scope: Target | { readonly control: true }, key: string): string {
  if (scope === null) return `{${broadcastChannel(prefix)}}:idem:${key}`;
  if (typeof scope !== 'string') return `{${controlChannel(prefix)}}:idem:${key}`;
  return `${prefix}:idem:{${scope}}:${key}`;
}

/** Names the reserved words of roomKey and extraChannel. */
const RESERVED_KINDS = new Set(['room', 'meta', 'history', 'idem', 'broadcast', 'control']);

function checkKind(what: string, kind: string): void {
  if (kind === '' || RESERVED_KINDS.has(kind) || /[\s{}:#]/.test(kind)) {
    throw new Error(
      `${what} ${JSON.stringify(kind)} is not usable: pick a word other than ${[...RESERVED_KINDS].join(', ')}, without spaces, braces, colons or #`,
    );
  }
}

/**
 * An extra channel every instance may listen to (Backplane.listen), beside the control channel that the server API
 * owns (onControl): `<prefix>:<name>`.
 */
export function extraChannel(prefix: string, name: string): string {
  checkKind('extra channel name', name);
  return `${prefix}:${name}`;
}

/**
 * A per-room key or extra channel named by `kind` (such as "presence"), on the room's cluster slot: its hash tag is
 * the room's, as in roomChannel and the history keys, so one script may touch the room's keys and publish on it.
 */
export function roomKey(prefix: string, kind: string, room: string): string {
  checkKind('room key kind', kind);
  return `${prefix}:${kind}:{${room}}`;
}

/** A per-room extra channel (Backplane.listen), on the room's cluster slot; see roomKey. */
export function roomExtraChannel(prefix: string, kind: string, room: string): string {
  return roomKey(prefix, kind, room);
}

/**
 * Wire format on a channel: `<instanceId> <frame>` (history off) or `<instanceId>#<seq> <frame>` (history on,
 * written by the append script). Instance ids contain neither spaces nor `#`, so the first space ends the tag
 * and the frame stays opaque. Without a seq the publisher already delivered locally, so it drops its own
 * envelope; with a seq every instance delivers from the channel, its own included, which keeps local delivery
 * in seq order.
 */
export function encodeEnvelope(instanceId: string, frame: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${instanceId} `), frame]);
}

/** Splits an envelope without copying the frame bytes; null when the envelope is malformed. */
export function decodeEnvelope(raw: Buffer): { instanceId: string; position?: FramePosition; frame: Buffer } | null {
  const space = raw.indexOf(0x20);
  if (space <= 0) return null;
  const tag = raw.toString('latin1', 0, space);
  const frame = raw.subarray(space + 1);
  const hash = tag.indexOf('#');
  if (hash < 0) return { instanceId: tag, frame };
  const seq = Number(tag.slice(hash + 1));
  if (hash === 0 || !Number.isSafeInteger(seq)) return null;
  const epoch = numberedFrameEpoch(frame);
  if (epoch === undefined) return null;
  return { instanceId: tag.slice(0, hash), position: { seq, epoch }, frame };
}

const EPOCH_MARK = Buffer.from(',"epoch":"');

/**
 * The epoch the append script wrote at the end of a numbered frame (`…,"epoch":"<epoch>"}`). Read once per frame
 * received from the channel, here, so nothing downstream looks inside frame bytes again.
 */
export function numberedFrameEpoch(frame: Buffer): string | undefined {
  const at = frame.lastIndexOf(EPOCH_MARK);
  if (at < 0 || frame.length - 2 <= at + EPOCH_MARK.length) return undefined;
  return frame.toString('latin1', at + EPOCH_MARK.length, frame.length - 2);
}

/** Whether a received envelope is one this instance must skip: its own, published after it already delivered locally. */
export function isOwnEcho(envelope: { instanceId: string; position?: FramePosition }, instanceId: string): boolean {
  return envelope.position === undefined && envelope.instanceId === instanceId;
}
