/**
 * Presence on this instance (issue 18). A room's presence costs nothing until somebody asks for it (a join with
 * `presence: true`, a `presence` frame, or the server API's `?members=1`): from then on the room is *tracked* (its
 * marker lives in the backplane) and every instance records its local members of it, refreshes those entries every
 * tick and, with a local watcher, prunes the expired ones. In an untracked room a join, leave or close sends nothing,
 * except one read of the marker when the room gets its first local member (the enter script, which stores nothing
 * without the marker).
 *
 * The first ask sets the marker `pending`, has every instance record its members of the room over the control channel
 * (each replies once they are stored), then sets it `ready`: the first answer lists every member of every instance.
 * An instance whose first local member joins later reads the marker with that member's enter; one whose subscription
 * was down during the start reads the markers of its rooms once it is back (resync). The marker lives
 * 2 × RELAY_PRESENCE_TTL_MS after the last watcher's refresh or query; each instance's refresh finds it gone, removes
 * its entries there and stops. `presence` frames are answered here, and `joined`/`left` events are forwarded to the
 * local members that joined with `presence: true`; a room's presence channel is subscribed only while one watches it.
 */
import type { Logger } from 'pino';
import { BackplaneUnavailableError, presenceTiming, type Backplane, type PresenceList, type PresenceMember, type PresenceTiming } from '../backplane/types';
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

/** Asks every instance to record its members of a room (ServerControl.trackPresence); resolves once they replied. */
export type GatherPresence = (room: string) => Promise<unknown>;

/** This instance's members of a room, and whether the room is tracked: undefined until the first enter answers. */
interface LocalRoom {
  readonly members: Map<string, PresenceMember>;
  tracked: boolean | undefined;
  /** The first enter, which reads the marker; later joins wait for it. */
  probe: Promise<void> | undefined;
}

export class Presence<P extends PresencePeer> {
  readonly timing: PresenceTiming;
  /** Room → this instance's members of it; those of tracked rooms are refreshed every tick. */
  private readonly local = new Map<string, LocalRoom>();
  /** Room → local peers that joined it with `presence: true`. */
  private readonly watchers = new Map<string, Set<P>>();
  /** Room → the presence channel subscription, made for the room's first local watcher. */
  private readonly watching = new Map<string, Promise<void>>();
  /** Room → this instance's start of tracking it (marker, gather), shared by the asks that arrive meanwhile. */
  private readonly starting = new Map<string, Promise<void>>();
  /** Room → connection ids whose removal goes out with the next flush (one script call per room). */
  private readonly leaving = new Map<string, Set<string>>();
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  /** Without the control channel (a lone hub) only this instance's members are recorded. */
  private gather: GatherPresence = (room) => this.record(room);

  constructor(private readonly opts: PresenceOptions<P>) {
    this.timing = presenceTiming(opts.config.presenceTtlMs);
    opts.backplane.onPresence((room, frame) => this.deliver(room, frame));
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.timing.tickMs);
    this.timer.unref();
  }

  /** How a start of tracking reaches every instance: the control channel's scatter-gather. */
  useGather(gather: GatherPresence): void {
    this.gather = gather;
  }

  /**
   * A peer joined `room` (or joined it again): records it if the room is tracked and, with `watch`, subscribes it to
   * the room's events and makes the room tracked (false stops them; undefined keeps what it had). Resolves once the
   * entry is stored, so a `presence` frame sent anywhere after the join's ack lists the member; never rejects (a
   * failed store is retried every tick).
   */
  async enter(peer: P, room: string, watch: boolean | undefined): Promise<void> {
    let state = this.local.get(room);
    if (state === undefined) this.local.set(room, (state = { members: new Map(), tracked: undefined, probe: undefined }));
    // Back before its removal went out: the entry stays, and nobody sees a left and a joined.
    this.leaving.get(room)?.delete(peer.id);
    const known = state.members.has(peer.id);
    const member: PresenceMember = { connectionId: peer.id, user: peer.auth?.sub ?? null, instanceId: this.opts.config.instanceId, since: Date.now() };
    if (!known) state.members.set(peer.id, member);
    if (watch === true) {
      await this.watch(peer, room);
      await this.store(room, state, [state.members.get(peer.id) ?? member]);
      if (state.tracked !== true) await this.track(room).catch((err: unknown) => peer.log.warn({ err, room }, 'starting presence failed; retried with the next refresh'));
      return;
    }
    if (watch === false) this.unwatch(peer, room);
    if (known || state.members.get(peer.id) !== member) return;
    await this.store(room, state, [member]);
  }

  /** A peer left `room` (leave, refresh without the room, or its socket closed): its entry goes with the next flush. */
  leave(peer: P, room: string): void {
    const state = this.local.get(room);
    if (state?.members.delete(peer.id) !== true) return;
    if (state.members.size === 0) this.local.delete(room);
    this.unwatch(peer, room);
    // Nothing was stored in an untracked room.
    if (state.tracked === false) return;
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
      const list = await this.list(room, this.opts.config.presenceListMax);
      this.opts.send(peer, encodePresence(id, room, list.members, list.count));
    } catch (err) {
      peer.log.warn({ err, room }, 'reading presence failed');
      peer.sendError({ id, code: 'backplane_unavailable', message: `${err instanceof Error ? err.message : String(err)}` });
    }
  }

  /** The room's members on every instance (at most `limit`, the count exact); the room is tracked from now on. */
  async list(room: string, limit: number): Promise<PresenceList> {
    const tracked = await this.opts.backplane.presenceMembers(room, limit, this.timing);
    if (tracked !== null) {
      this.adopt(room);
      return tracked;
    }
    await this.track(room);
    const started = await this.opts.backplane.presenceMembers(room, limit, this.timing);
    if (started === null) throw new BackplaneUnavailableError(`presence of room ${JSON.stringify(room)} could not be started; ask again`);
    return started;
  }

  /**
   * An instance (this one too) started tracking `room` (a control message): records this instance's members of it;
   * resolves with how many once they are stored, never rejects.
   */
  async record(room: string): Promise<number> {
    const state = this.local.get(room);
    if (state === undefined) return 0;
    state.tracked = true;
    await this.send(room, state, [...state.members.values()]);
    return state.members.size;
  }

  /** Removes every local entry now (shutdown) and stops the timer; resolves when the removals are done or failed. */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const [room, state] of this.local) {
      if (state.tracked === false) continue;
      let ids = this.leaving.get(room);
      if (ids === undefined) this.leaving.set(room, (ids = new Set()));
      for (const id of state.members.keys()) ids.add(id);
    }
    this.local.clear();
    await this.flushing;
    await this.flush();
  }

  private deliver(room: string, frame: Buffer): void {
    for (const peer of this.watchers.get(room) ?? []) this.opts.send(peer, frame);
  }

  /** Starts tracking `room` on every instance, once at a time per room: marker `pending`, gather, marker `ready`. */
  private track(room: string): Promise<void> {
    let started = this.starting.get(room);
    if (started === undefined) {
      started = (async () => {
        const { backplane } = this.opts;
        await backplane.presenceTrack(room, this.timing, 'pending');
        await this.gather(room);
        await backplane.presenceTrack(room, this.timing, 'ready');
      })().finally(() => this.starting.delete(room));
      this.starting.set(room, started);
    }
    return started;
  }

  /** A list or a resync found the room tracked: local members this instance did not record (it missed the start) are recorded. */
  private adopt(room: string): void {
    const state = this.local.get(room);
    if (state === undefined || state.tracked === true || state.probe !== undefined) return;
    void this.record(room);
  }

  /**
   * The subscription is back after an outage (the hub calls it on down → ready, beside the history catch-up): a
   * `track` sent meanwhile never reached this instance. Reads the marker of every room with local members not known to
   * be tracked (one read per room, sent together) and records the members of those that are. Never rejects: a failed
   * read is logged, and the next reconnect reads again.
   */
  async resync(): Promise<void> {
    const rooms = [...this.local].filter(([, state]) => state.tracked !== true && state.probe === undefined).map(([room]) => room);
    if (rooms.length === 0) return;
    let tracked: boolean[];
    try {
      tracked = await this.opts.backplane.presenceTracked(rooms);
    } catch (err) {
      this.opts.logger.warn({ err, rooms: rooms.length }, 'reading presence markers after a reconnect failed');
      return;
    }
    rooms.forEach((room, i) => {
      if (tracked[i]) this.adopt(room);
    });
  }

  /**
   * Stores members of a room whose tracking this instance knows, or reads the marker with them (the room's first local
   * member); joins that arrive during that read wait for it.
   */
  private async store(room: string, state: LocalRoom, members: PresenceMember[]): Promise<void> {
    if (state.probe !== undefined) await state.probe;
    if (state.tracked === false || this.local.get(room) !== state) return;
    if (state.tracked === true) return this.send(room, state, members);
    const probe: Promise<void> = this.send(room, state, members).finally(() => {
      if (state.probe === probe) state.probe = undefined;
    });
    state.probe = probe;
    await probe;
  }

  /** One enter call; its answer says whether the room is (still) tracked. Never rejects. */
  private async send(room: string, state: LocalRoom, members: PresenceMember[]): Promise<void> {
    const watched = this.watchers.has(room);
    try {
      const added = await this.opts.backplane.presenceEnter(room, members, this.timing, watched);
      state.tracked = added !== null;
    } catch (err) {
      this.opts.logger.warn({ err, room }, 'recording presence failed; retried with the next refresh');
      return;
    }
    // A watched room whose marker is gone (the backplane lost it): tracked again, on every instance.
    if (!state.tracked && watched && this.watchers.has(room)) this.restart(room);
  }

  private restart(room: string): void {
    this.track(room).catch((err: unknown) => this.opts.logger.warn({ err, room }, 'starting presence failed; retried with the next refresh'));
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

  /**
   * Refreshes the entries of every room not known to be untracked (one call per room, which also finds a marker gone
   * and, for a watched room, keeps it alive) and prunes the watched rooms.
   */
  private tick(): void {
    const { backplane, logger } = this.opts;
    if (backplane.status().state !== 'ready') return;
    for (const [room, state] of this.local) {
      // A watched room whose start failed (backplane down) starts again.
      if (state.tracked === false && this.watchers.has(room)) this.restart(room);
      if (state.tracked === false || state.probe !== undefined) continue;
      void this.send(room, state, [...state.members.values()]);
    }
    for (const room of this.watchers.keys()) {
      backplane.presencePrune(room).catch((err: unknown) => logger.warn({ err, room }, 'presence prune failed'));
    }
  }
}
