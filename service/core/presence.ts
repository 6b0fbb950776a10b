/**
 * Presence on this instance (issue 18): records every local member of a room in the backplane while its connection
 * lives, refreshes those entries and prunes the expired ones of watched rooms every tick, answers `presence` frames,
 * and forwards `joined`/`left` events to the local members that joined with `presence: true`. A room's presence
 * channel is subscribed only while a local member watches it; a room nobody watches costs its entries and their
 * refresh, nothing else.
 */
import type { Logger } from 'pino';
import { presenceTiming, type Backplane, type PresenceMember, type PresenceTiming } from '../backplane/types';
import type { ServiceConfig } from '../config';
import { encodePresence, type ProtocolError } from '../protocol';

/** What presence needs of a connection. */
export interface PresencePeer {
  readonly id: string;
  readonly rooms: Set<string>;
  readonly auth: { readonly sub: string | undefined } | null;
  readonly log: Logger;
  sendError(err: ProtocolError): void;
}

export interface PresenceOptions<P extends PresencePeer> {
  readonly config: ServiceConfig;
  readonly backplane: Backplane;
  readonly logger: Logger;
  /** Sends one frame to a peer; false when it was not sent. */
  readonly send: (peer: P, data: string | Buffer) => boolean;
}

export class Presence<P extends PresencePeer> {
  readonly timing: PresenceTiming;
  /** Room → this instance's members of it, refreshed every tick. */
  private readonly local = new Map<string, Map<string, PresenceMember>>();
  /** Room → local peers that joined it with `presence: true`. */
  private readonly watchers = new Map<string, Set<P>>();
  /** Room → the presence channel subscription, made for the room's first local watcher. */
  private readonly watching = new Map<string, Promise<void>>();
  /** Room → connection ids whose removal goes out with the next flush (one script call per room). */
  private readonly leaving = new Map<string, Set<string>>();
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PresenceOptions<P>) {
    this.timing = presenceTiming(opts.config.presenceTtlMs);
    opts.backplane.onPresence((room, frame) => this.deliver(room, frame));
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.timing.tickMs);
    this.timer.unref();
  }

  /**
   * A peer joined `room` (or joined it again): records it and, with `watch`, subscribes it to the room's events
   * (false stops them; undefined keeps what it had). Resolves once the entry is stored, so a `presence` frame sent
   * anywhere after the join's ack lists the member; never rejects (a failed store is retried every tick).
   */
  async enter(peer: P, room: string, watch: boolean | undefined): Promise<void> {
    let entries = this.local.get(room);
    if (entries === undefined) this.local.set(room, (entries = new Map<string, PresenceMember>()));
    // Back before its removal went out: the entry stays, and nobody sees a left and a joined.
    this.leaving.get(room)?.delete(peer.id);
    const known = entries.has(peer.id);
    const member: PresenceMember = { connectionId: peer.id, user: peer.auth?.sub ?? null, instanceId: this.opts.config.instanceId, since: Date.now() };
    if (!known) entries.set(peer.id, member);
    if (watch === true) await this.watch(peer, room);
    else if (watch === false) this.unwatch(peer, room);
    if (known || this.local.get(room)?.get(peer.id) !== member) return;
    try {
      await this.opts.backplane.presenceEnter(room, [member], this.timing);
    } catch (err) {
      peer.log.warn({ err, room }, 'recording presence failed; retried with the next refresh');
    }
  }

  /** A peer left `room` (leave, refresh without the room, or its socket closed): its entry goes with the next flush. */
  leave(peer: P, room: string): void {
    const entries = this.local.get(room);
    if (entries?.delete(peer.id) !== true) return;
    if (entries.size === 0) this.local.delete(room);
    this.unwatch(peer, room);
    let ids = this.leaving.get(room);
    if (ids === undefined) this.leaving.set(room, (ids = new Set()));
    ids.add(peer.id);
    this.flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush());
  }

  /** Answers a `presence` frame: members only, up to RELAY_PRESENCE_LIST_MAX of them, with the exact count. */
  async query(peer: P, room: string, id: string | undefined): Promise<void> {
    if (!peer.rooms.has(room)) {
      return peer.sendError({ id, code: 'forbidden', message: `presence of room ${JSON.stringify(room)} is visible to its members only; join it first` });
    }
    try {
      const list = await this.opts.backplane.presenceMembers(room, this.opts.config.presenceListMax);
      this.opts.send(peer, encodePresence(id, room, list.members, list.count));
    } catch (err) {
      peer.log.warn({ err, room }, 'reading presence failed');
      peer.sendError({ id, code: 'backplane_unavailable', message: `${err instanceof Error ? err.message : String(err)}` });
    }
  }

  /** Removes every local entry now (shutdown) and stops the timer; resolves when the removals are done or failed. */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const [room, entries] of this.local) {
      let ids = this.leaving.get(room);
      if (ids === undefined) this.leaving.set(room, (ids = new Set()));
      for (const id of entries.keys()) ids.add(id);
    }
    this.local.clear();
    await this.flushing;
    await this.flush();
  }

  private deliver(room: string, frame: Buffer): void {
    for (const peer of this.watchers.get(room) ?? []) this.opts.send(peer, frame);
  }

  private async watch(peer: P, room: string): Promise<void> {
    let peers = this.watchers.get(room);
    if (peers === undefined) this.watchers.set(room, (peers = new Set()));
    peers.add(peer);
    let subscribed = this.watching.get(room);
    if (subscribed === undefined) {
      subscribed = this.opts.backplane.watchPresence(room).catch((err: unknown) => {
        this.opts.logger.warn({ err, room }, 'presence subscribe failed');
      });
      this.watching.set(room, subscribed);
    }
    await subscribed;
  }

  private unwatch(peer: P, room: string): void {
    const peers = this.watchers.get(room);
    if (peers?.delete(peer) !== true || peers.size > 0) return;
    this.watchers.delete(room);
    this.watching.delete(room);
    this.opts.backplane.unwatchPresence(room).catch((err: unknown) => this.opts.logger.warn({ err, room }, 'presence unsubscribe failed'));
  }

  private async flush(): Promise<void> {
    this.flushing = null;
    const batches = [...this.leaving];
    this.leaving.clear();
    await Promise.all(
      batches.map(([room, ids]) =>
        this.opts.backplane.presenceLeave(room, [...ids]).catch((err: unknown) => {
          // The entries expire within the TTL and a watcher's prune sends their left events.
          this.opts.logger.warn({ err, room, members: ids.size }, 'removing presence failed; the entries expire');
        }),
      ),
    );
  }

  /** Refreshes every local entry (one call per room) and prunes the watched rooms. */
  private tick(): void {
    const { backplane, logger } = this.opts;
    if (backplane.status().state !== 'ready') return;
    for (const [room, entries] of this.local) {
      backplane.presenceEnter(room, [...entries.values()], this.timing).catch((err: unknown) => logger.warn({ err, room }, 'presence refresh failed'));
    }
    for (const room of this.watchers.keys()) {
      backplane.presencePrune(room).catch((err: unknown) => logger.warn({ err, room }, 'presence prune failed'));
    }
  }
}
