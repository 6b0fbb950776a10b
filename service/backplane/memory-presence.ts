/**
 * Presence of the in-memory backplane: the same entries, tracked markers, lifetimes and events as the Redis scripts in
 * presence-store.ts, in process. There is one instance, so every event goes straight to the handler.
 */
import { encodePresenceEvent, encodePresenceMember } from '../protocol';
import type { PresenceHandler, PresenceList, PresenceMember, PresenceTiming, TrackPhase } from './types';

interface Entry {
  readonly member: PresenceMember;
  readonly json: string;
  expiresAt: number;
}

export class MemoryPresence {
  private readonly rooms = new Map<string, Map<string, Entry>>();
  /** Room → its tracked marker (see presence-store.ts). */
  private readonly markers = new Map<string, { phase: TrackPhase; expiresAt: number }>();
  private handler: PresenceHandler | undefined;

  onEvent(handler: PresenceHandler): void {
    this.handler = handler;
  }

  enter(room: string, members: readonly PresenceMember[], timing: PresenceTiming, watched: boolean): number | null {
    const marker = this.marker(room);
    if (marker === undefined) {
      for (const member of members) this.rooms.get(room)?.delete(member.connectionId);
      if (this.rooms.get(room)?.size === 0) this.rooms.delete(room);
      return null;
    }
    if (watched) marker.expiresAt = Date.now() + timing.keyTtlMs;
    let entries = this.rooms.get(room);
    if (entries === undefined) this.rooms.set(room, (entries = new Map<string, Entry>()));
    const expiresAt = Date.now() + timing.lifetimeMs;
    let added = 0;
    for (const member of members) {
      const known = entries.get(member.connectionId);
      if (known !== undefined) {
        known.expiresAt = expiresAt;
        continue;
      }
      const json = encodePresenceMember(member);
      entries.set(member.connectionId, { member, json, expiresAt });
      added++;
      this.emit('joined', room, json);
    }
    return added;
  }

  leave(room: string, connectionIds: readonly string[]): number {
    const entries = this.rooms.get(room);
    if (entries === undefined) return 0;
    let removed = 0;
    for (const id of connectionIds) {
      const entry = entries.get(id);
      if (entry === undefined) continue;
      entries.delete(id);
      removed++;
      this.emit('left', room, entry.json);
    }
    if (entries.size === 0) this.rooms.delete(room);
    return removed;
  }

  prune(room: string): number {
    const entries = this.rooms.get(room);
    if (entries === undefined) return 0;
    const now = Date.now();
    const expired = [...entries.values()].filter((e) => e.expiresAt <= now).map((e) => e.member.connectionId);
    return this.leave(room, expired);
  }

  track(room: string, timing: PresenceTiming, phase: TrackPhase): void {
    const expiresAt = Date.now() + timing.keyTtlMs;
    const marker = this.marker(room);
    if (phase === 'pending' && marker !== undefined) marker.expiresAt = expiresAt;
    else this.markers.set(room, { phase, expiresAt });
  }

  list(room: string, limit: number, timing: PresenceTiming): PresenceList | null {
    const marker = this.marker(room);
    if (marker?.phase !== 'ready') return null;
    const now = Date.now();
    marker.expiresAt = now + timing.keyTtlMs;
    let count = 0;
    const members: PresenceMember[] = [];
    for (const entry of this.rooms.get(room)?.values() ?? []) {
      if (entry.expiresAt <= now) continue;
      count++;
      if (members.length < limit) members.push(entry.member);
    }
    return { count, members };
  }

  tracked(room: string): boolean {
    return this.marker(room) !== undefined;
  }

  clear(): void {
    this.rooms.clear();
    this.markers.clear();
  }

  /** The room's marker while it lives. */
  private marker(room: string): { phase: TrackPhase; expiresAt: number } | undefined {
    const marker = this.markers.get(room);
    if (marker === undefined || marker.expiresAt > Date.now()) return marker;
    this.markers.delete(room);
    return undefined;
  }

  private emit(kind: 'joined' | 'left', room: string, json: string): void {
    this.handler?.(room, Buffer.from(encodePresenceEvent(kind, room, json)));
  }
}
