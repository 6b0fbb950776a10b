/**
 * The only module that touches ws internals: writes to client sockets, batches them per turn of the event loop
 * (corking), and decides who is a slow consumer. Everything else sends through `Outbound.send`.
 */
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';

/** What the outbound module keeps per connection (the session implements it). */
export interface OutboundPeer {
  readonly ws: WebSocket;
  /** Set once we decided to close it: nothing more is sent. */
  closing: boolean;
  /** Whether the socket's writes are held until the current batch is flushed. */
  corked: boolean;
  /** When the backlog was first seen over the cap after a flush; 0 while under it. */
  overSince: number;
}

export interface OutboundOptions {
  /** Bytes the kernel may leave unaccepted for one socket (RELAY_SEND_BUFFER_BYTES). */
  readonly capBytes: number;
  /** How long a backlog may stay over the cap before the socket is a slow consumer. @default 2000 */
  readonly graceMs?: number;
  /** Called once for a socket found to be a slow consumer; the caller closes it (1013). */
  readonly onSlowConsumer: (peer: OutboundPeer, backlog: number) => void;
}

/**
 * A backlog (after a flush) this many times the cap ends the grace at once, so a reader that stopped cannot hold
 * unbounded memory. A batch itself is bounded by what one turn of the event loop read from clients and the backplane.
 */
const HARD_CAP_FACTOR = 2;
const DEFAULT_GRACE_MS = 2_000;
/** Lowest drain threshold: below the socket's high-water mark no 'drain' event is guaranteed. */
const MIN_DRAIN_THRESHOLD = 64 * 1024;

/**
 * Batches writes and applies the send-buffer cap. The decision counts only what the kernel has not accepted after
 * a batch is flushed: bytes corked in this turn are on their way, not a backlog. A backlog over the cap is allowed
 * for a grace period (a fast reader catches up within it); one over the hard cap, or still over the cap after the
 * grace, makes the socket a slow consumer.
 */
export class Outbound {
  private corkedPeers: OutboundPeer[] = [];
  private readonly watched = new Set<OutboundPeer>();
  private watchTimer: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  /** The payload of the last framed send and its header: a fan-out sends one payload to many sockets in a row. */
  private lastPayload: Buffer | null = null;
  private lastHeader: Buffer = Buffer.alloc(0);

  constructor(private readonly opts: OutboundOptions) {
    this.graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  }

  /** Whether the socket can still be written to. */
  isOpen(peer: OutboundPeer): boolean {
    return !peer.closing && peer.ws.readyState === WebSocket.OPEN;
  }

  /** Sends text or bytes in the current batch; false when the socket is closing or found to be a slow consumer. */
  send(peer: OutboundPeer, data: string | Buffer): boolean {
    if (!this.isOpen(peer)) return false;
    this.cork(peer);
    if (!peer.corked && !this.checkBacklog(peer, typeof data === 'string' ? Buffer.byteLength(data) : data.length)) return false;
    const socket = typeof data === 'string' ? undefined : tcpSocketOf(peer.ws);
    if (socket && typeof data !== 'string') {
      // The frame is written as ws would write it (no extension is negotiated: perMessageDeflate is off), with its
      // header built once per payload instead of once per recipient.
      socket.write(this.headerOf(data));
      socket.write(data);
    } else {
      peer.ws.send(data, { binary: false });
    }
    return true;
  }

  private headerOf(payload: Buffer): Buffer {
    if (payload !== this.lastPayload) {
      this.lastHeader = textFrameHeader(payload.length);
      this.lastPayload = payload;
    }
    return this.lastHeader;
  }

  /**
   * Resolves once the socket's backlog is at most `threshold` bytes (true), or false when the socket closed or the
   * backlog did not shrink to it within the grace (the caller treats that reader as slow). Used to stream replays.
   */
  whenWritable(peer: OutboundPeer, threshold: number): Promise<boolean> {
    this.flushNow();
    const limit = Math.max(threshold, MIN_DRAIN_THRESHOLD);
    if (!this.isOpen(peer)) return Promise.resolve(false);
    if (peer.ws.bufferedAmount <= limit) return Promise.resolve(true);
    const socket = tcpSocketOf(peer.ws);
    if (!socket) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        socket.off('drain', onDrain);
        socket.off('close', onClose);
        resolve(ok && this.isOpen(peer));
      };
      const onDrain = (): void => {
        if (peer.ws.bufferedAmount <= limit) done(true);
      };
      const onClose = (): void => done(false);
      const timer = setTimeout(() => done(peer.ws.bufferedAmount <= limit), this.graceMs);
      socket.on('drain', onDrain);
      socket.on('close', onClose);
    });
  }

  /** Stops the grace timer; sockets are closed by their owner. */
  stop(): void {
    if (this.watchTimer !== undefined) clearTimeout(this.watchTimer);
    this.watchTimer = undefined;
    this.watched.clear();
  }

  /**
   * Holds a socket's writes until the current turn of the event loop has handled every socket that was ready (one
   * Redis read alone can carry many messages for the same room), so each recipient gets one write system call per
   * turn instead of one per message.
   */
  private cork(peer: OutboundPeer): void {
    if (peer.corked) return;
    const socket = tcpSocketOf(peer.ws);
    if (!socket) return;
    socket.cork();
    peer.corked = true;
    this.corkedPeers.push(peer);
    if (this.corkedPeers.length === 1) setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushNow();
  };

  private flushNow(): void {
    if (this.corkedPeers.length === 0) return;
    const peers = this.corkedPeers;
    this.corkedPeers = [];
    for (const peer of peers) {
      peer.corked = false;
      tcpSocketOf(peer.ws)?.uncork();
    }
    // After the uncork the kernel has taken what it can: what is left is the backlog the cap applies to.
    for (const peer of peers) if (this.isOpen(peer)) this.checkBacklog(peer, 0);
  }

  /** Applies the cap to the backlog plus `adding` bytes; false when the socket was found to be a slow consumer. */
  private checkBacklog(peer: OutboundPeer, adding: number): boolean {
    const backlog = peer.ws.bufferedAmount + adding;
    const cap = this.opts.capBytes;
    if (backlog <= cap) {
      peer.overSince = 0;
      return true;
    }
    const now = Date.now();
    if (backlog > cap * HARD_CAP_FACTOR || (peer.overSince !== 0 && now - peer.overSince >= this.graceMs)) {
      this.slow(peer);
      return false;
    }
    if (peer.overSince === 0) {
      peer.overSince = now;
      this.watch(peer);
    }
    return true;
  }

  /** Re-checks over-cap sockets once their grace has passed, even when nothing more is sent to them. */
  private watch(peer: OutboundPeer): void {
    this.watched.add(peer);
    if (this.watchTimer !== undefined) return;
    this.watchTimer = setTimeout(this.recheck, this.graceMs);
    this.watchTimer.unref();
  }

  private readonly recheck = (): void => {
    this.watchTimer = undefined;
    const now = Date.now();
    for (const peer of [...this.watched]) {
      if (!this.isOpen(peer) || peer.overSince === 0) {
        this.watched.delete(peer);
        continue;
      }
      if (now - peer.overSince < this.graceMs) continue;
      this.watched.delete(peer);
      this.checkBacklog(peer, 0);
    }
    if (this.watched.size > 0) {
      this.watchTimer = setTimeout(this.recheck, Math.max(10, this.graceMs / 4));
      this.watchTimer.unref();
    }
  };

  private slow(peer: OutboundPeer): void {
    if (peer.closing) return;
    this.watched.delete(peer);
    this.opts.onSlowConsumer(peer, peer.ws.bufferedAmount);
  }
}

/** The header of a final, unmasked text frame carrying `length` bytes (RFC 6455 section 5.2), as a server sends it. */
export function textFrameHeader(length: number): Buffer {
  if (length < 126) return Buffer.from([0x81, length]);
  if (length < 65_536) {
    const header = Buffer.allocUnsafe(4);
    header[0] = 0x81;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
    return header;
  }
  const header = Buffer.allocUnsafe(10);
  header[0] = 0x81;
  header[1] = 127;
  header.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
  header.writeUInt32BE(length >>> 0, 6);
  return header;
}

/** The socket under a WebSocket: ws has no public cork, and keeps it in `_socket` (null once closed). */
function tcpSocketOf(ws: WebSocket): Duplex | null | undefined {
  return (ws as WebSocket & { _socket?: Duplex | null })._socket;
}
