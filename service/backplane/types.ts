/**
 * The contract between the hub (local sockets and rooms) and a backplane (how instances reach each other).
 *
 * A backplane moves opaque, already-serialised client frames between instances. The publishing
 * instance builds the exact `message` frame once; every receiving instance forwards those bytes to
 * its local members without parsing or re-serialising them.
 */

/** `connecting` before the first connection, `ready` when publish and subscribe work, `down` while reconnecting, `closed` after close(). */
export type BackplaneState = 'connecting' | 'ready' | 'down' | 'closed';

/** Room name, or null for the broadcast channel (every client on every instance). */
export type Target = string | null;

/** Called for every frame published by another instance; `frame` is the client-ready JSON text as UTF-8 bytes. */
export type FrameHandler = (target: Target, frame: Buffer) => void;

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
  /** Subscribes to a room's channel; called by the hub on the room's first local member. */
  subscribe(room: string): Promise<void>;
  /** Unsubscribes from a room's channel; called by the hub after the room's last local member left. */
  unsubscribe(room: string): Promise<void>;
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

/** Channel names shared by every backplane implementation; the prefix isolates apps sharing one Redis. */
export function roomChannel(prefix: string, room: string): string {
  // The hash tag keeps a room's channel and any per-room keys on one cluster slot.
  return `${prefix}:room:{${room}}`;
}

export function broadcastChannel(prefix: string): string {
  return `${prefix}:broadcast`;
}

/**
 * Wire format on a channel: `<instanceId> <frame>`. Instance ids contain no spaces, so the first
 * space splits tag from frame; an instance drops what it tagged itself (it already delivered locally).
 */
export function encodeEnvelope(instanceId: string, frame: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${instanceId} `), frame]);
}

/** Splits an envelope without copying the frame bytes; null when the envelope is malformed. */
export function decodeEnvelope(raw: Buffer): { instanceId: string; frame: Buffer } | null {
  const space = raw.indexOf(0x20);
  if (space <= 0) return null;
  return { instanceId: raw.toString('latin1', 0, space), frame: raw.subarray(space + 1) };
}
