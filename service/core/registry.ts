/**
 * The registry: this instance's connections and rooms, and local fan-out. Each room keeps the position of the last
 * numbered frame its members were sent; a frame that does not follow it (a gap after a backplane reconnect, or a new
 * epoch) makes the room catch up from the history before anything newer is delivered, so a member never silently
 * misses an acked message, and is told explicitly when the room's history started again.
 */
import type { Logger } from 'pino';
import type { Backplane, FramePosition, HistoryRead, Target } from '../backplane/types';
import type { RelayMetrics } from '../metrics';
import { encodeResync } from '../protocol';
import { JoinState, compare, type HeldFrame } from './join-state';

/** What the registry needs of a member. */
export interface Member {
  readonly id: string;
  readonly rooms: Set<string>;
}

export interface Room<M extends Member> {
  readonly name: string;
  readonly members: Set<M>;
  /** Resolves once the backplane subscription of the room is made (or failed, see subscribe). */
  readonly subscribed: Promise<void>;
  /** Position of the last numbered frame delivered to the members; undefined until known. */
  position: FramePosition | undefined;
  /** Live frames held while the room catches up from the history; null when it is not catching up. */
  held: HeldFrame[] | null;
  /** Whether a catch-up failed (backplane down) and must run again once the backplane is back. */
  stale: boolean;
  /** Members whose join is in progress. */
  joins: Map<M, JoinState> | null;
}

export interface RegistryOptions<M extends Member> {
  readonly backplane: Backplane;
  readonly metrics: RelayMetrics;
  readonly logger: Logger;
  /** Sends one frame to a member; false when it was not sent. */
  readonly send: (member: M, data: string | Buffer) => boolean;
  /** A member whose held frames outgrew the bound: a slow consumer. */
  readonly onOverflow: (member: M) => void;
  /** Most frames held per room during a catch-up; beyond it they are dropped and read again from the history. */
  readonly maxHeldFrames: number;
  /** Called after a member left a room, whatever the reason (leave, refresh, close). */
  readonly onLeave?: (member: M, room: string) => void;
}

export class Registry<M extends Member> {
  readonly members = new Set<M>();
  readonly rooms = new Map<string, Room<M>>();

  constructor(private readonly opts: RegistryOptions<M>) {}

  /** Adds a member to a room, creating (and subscribing) the room on its first local member. */
  join(member: M, name: string): Room<M> {
    let room = this.rooms.get(name);
    if (room === undefined) {
      room = { name, members: new Set(), subscribed: this.subscribe(name), position: undefined, held: null, stale: false, joins: null };
      this.rooms.set(name, room);
    }
    room.members.add(member);
    member.rooms.add(name);
    return room;
  }

  /** Removes a member from a room; the last one out unsubscribes it. */
  leave(member: M, name: string): boolean {
    if (!member.rooms.delete(name)) return false;
    this.opts.onLeave?.(member, name);
    const room = this.rooms.get(name);
    if (room === undefined) return true;
    room.members.delete(member);
    this.endJoin(room, member);
    if (room.members.size > 0) return true;
    this.rooms.delete(name);
    this.opts.backplane.unsubscribe(name).catch((err: unknown) => this.opts.logger.warn({ err, room: name }, 'backplane unsubscribe failed'));
    return true;
  }

  /** Starts a join state for a member: its live frames are held until `JoinState.acked`. */
  startJoin(room: Room<M>, member: M, maxHeldBytes: number): JoinState {
    const state = new JoinState(maxHeldBytes);
    (room.joins ??= new Map()).set(member, state);
    return state;
  }

  endJoin(room: Room<M>, member: M): void {
    if (room.joins?.delete(member) === true && room.joins.size === 0) room.joins = null;
  }

  /** The position a member of `room` has reached: its join's floor until it gets a newer frame, then the room's. */
  memberPosition(room: Room<M>, member: M): FramePosition | undefined {
    const state = room.joins?.get(member);
    return state?.phase === 'filtering' && state.floor !== undefined ? state.floor : room.position;
  }

  /** A join learned the room's position: it becomes the room's starting point when the room had none. */
  notePosition(room: Room<M>, position: FramePosition): void {
    room.position ??= position;
  }

  /** Entry point for frames from the backplane (and local frames without history). */
  deliver(target: Target, frame: Buffer, position?: FramePosition): number {
    if (target === null) return this.fanOut(this.members, frame);
    const room = this.rooms.get(target);
    if (room === undefined) return 0;
    if (position === undefined) return this.fanOutRoom(room, frame, undefined);
    if (room.held !== null) {
      if (room.held.length < this.opts.maxHeldFrames) room.held.push({ frame, position });
      return 0;
    }
    const last = room.position;
    if (last !== undefined) {
      const order = compare(position, last);
      if (order === 'old') return 0;
      if (order !== 'next') {
        this.catchUp(room, { frame, position });
        return 0;
      }
    }
    room.position = position;
    return this.fanOutRoom(room, frame, position);
  }

  /** After a backplane reconnect: every room with a known position reads what it may have missed. */
  catchUpAll(): void {
    for (const room of this.rooms.values()) if (room.position !== undefined && room.held === null) this.catchUp(room, undefined);
  }

  private catchUp(room: Room<M>, first: HeldFrame | undefined): void {
    room.held = first === undefined ? [] : [first];
    void this.runCatchUp(room);
  }

  private async runCatchUp(room: Room<M>): Promise<void> {
    const since = room.position;
    let read: HistoryRead | undefined;
    let epochChanged = false;
    try {
      if (since === undefined) throw new Error('no position to catch up from');
      read = await this.opts.backplane.readHistory(room.name, { seq: String(since.seq), epoch: since.epoch });
      if (read.outcome === 'epoch') {
        // The history started again (Redis restarted or the room expired): read the new epoch from its start.
        epochChanged = true;
        read = await this.opts.backplane.readHistory(room.name, { seq: '0', epoch: read.position.epoch });
      }
    } catch (err) {
      // Nothing is lost yet: the frames are in the history, read again when the backplane is back.
      if (this.rooms.get(room.name) === room) {
        room.held = null;
        room.stale = true;
      }
      this.opts.logger.warn({ err, room: room.name }, 'room catch-up failed; retried when the backplane reconnects');
      return;
    }
    if (this.rooms.get(room.name) !== room) return;
    room.stale = false;
    const epoch = read.position.epoch;
    if (read.outcome === 'ok') {
      const from = epochChanged ? 0 : Number(since.seq);
      if (epochChanged) this.notify(room, { seq: 0, epoch }, 'epoch');
      let delivered = 0;
      read.frames.forEach((frame, i) => {
        const position = { seq: from + 1 + i, epoch };
        room.position = position;
        delivered += this.fanOutRoom(room, frame, position);
      });
      if (read.frames.length === 0) room.position = { seq: from, epoch };
      this.opts.logger.info({ room: room.name, caughtUp: delivered, epochChanged }, 'room caught up from history');
    } else {
      // The gap cannot be filled (trimmed, over the replay cap): members are told to resynchronise from here.
      const position = { seq: Number(read.position.seq), epoch };
      this.notify(room, position, epochChanged ? 'epoch' : 'lost');
      room.position = position;
    }
    const held = room.held ?? [];
    room.held = null;
    for (const h of held) this.deliver(room.name, h.frame, h.position);
  }

  /** Tells every member whose join is not still reading that the room continues from `position`. */
  private notify(room: Room<M>, position: FramePosition, reason: 'epoch' | 'lost'): void {
    const frame = encodeResync(room.name, position, reason);
    for (const member of room.members) {
      if (room.joins?.get(member)?.phase === 'reading') continue;
      this.endJoin(room, member);
      this.opts.send(member, frame);
    }
  }

  private fanOut(members: Iterable<M>, frame: Buffer): number {
    let delivered = 0;
    for (const member of members) if (this.opts.send(member, frame)) delivered++;
    if (delivered > 0) this.opts.metrics.messagesOut.inc(delivered);
    return delivered;
  }

  private fanOutRoom(room: Room<M>, frame: Buffer, position: FramePosition | undefined): number {
    if (room.joins === null) return this.fanOut(room.members, frame);
    let delivered = 0;
    for (const member of room.members) {
      const state = room.joins?.get(member);
      if (state !== undefined) {
        const route = state.route(frame, position);
        if (route === 'overflow') this.opts.onOverflow(member);
        if (route !== 'deliver') continue;
        this.endJoin(room, member);
      }
      if (this.opts.send(member, frame)) delivered++;
    }
    if (delivered > 0) this.opts.metrics.messagesOut.inc(delivered);
    return delivered;
  }

  private subscribe(name: string): Promise<void> {
    // A failed subscribe must not fail the join: local members still get local messages, and the backplane
    // resubscribes its rooms when it reconnects.
    return this.opts.backplane.subscribe(name).catch((err: unknown) => {
      this.opts.logger.warn({ err, room: name }, 'backplane subscribe failed');
    });
  }
}
