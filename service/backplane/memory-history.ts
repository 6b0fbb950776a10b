/**
 * The in-memory backplane's room histories, bounded three ways: a count per room (RELAY_HISTORY_SIZE), bytes per room
 * (RELAY_HISTORY_MAX_BYTES) and bytes for all rooms together (RELAY_HISTORY_MEMORY_MAX_BYTES). Past the global cap
 * the least recently used rooms are dropped whole; such a room starts a new epoch on its next use, so a client
 * resuming it is answered recovered:false, never a replay with holes.
 */
import { EpochSource, type HistoryOptions } from './history';

/** What one room costs besides its frames (objects, map entry, epoch string), counted against the global cap. */
export const ROOM_OVERHEAD_BYTES = 256;

/** One room's history: the newest frames, the seq of the last one and when it was last used. */
export interface RoomHistory {
  readonly epoch: string;
  seq: number;
  /** frames[head..] are retained; frames[i] holds seq `seq - frames.length + 1 + i`. */
  readonly frames: Buffer[];
  head: number;
  /** Bytes of the retained frames. */
  bytes: number;
  touched: number;
}

export class RoomHistories {
  /** In least-recently-used order: a room moves to the end whenever it is used. */
  readonly #rooms = new Map<string, RoomHistory>();
  readonly #epochs = new EpochSource();
  #total = 0;
  #evicted = 0;

  constructor(
    private readonly opts: HistoryOptions,
    /** Cap on the bytes of every room's history together (frames plus ROOM_OVERHEAD_BYTES per room). */
    private readonly maxTotalBytes = Number.POSITIVE_INFINITY,
  ) {}

  /** The room's live history, starting a new epoch when it never existed, sat idle past the TTL or was evicted. */
  use(key: string, now = Date.now()): RoomHistory {
    let h = this.#rooms.get(key);
    if (h !== undefined) {
      this.#rooms.delete(key);
      if (now - h.touched > this.opts.ttlSeconds * 1000) {
        this.#total -= this.#cost(key, h);
        h = undefined;
      }
    }
    if (h === undefined) {
      h = { epoch: this.#epochs.next(), seq: 0, frames: [], head: 0, bytes: 0, touched: now };
      this.#total += this.#cost(key, h);
    }
    h.touched = now;
    this.#rooms.set(key, h);
    this.#evictBeyondCap(key);
    return h;
  }

  /** Keeps `frame` as the room's newest (its seq already counted), then trims the room to its count and byte budgets. */
  keep(key: string, h: RoomHistory, frame: Buffer): void {
    h.frames.push(frame);
    h.bytes += frame.length;
    this.#total += frame.length;
    const maxBytes = this.opts.maxBytes ?? Number.POSITIVE_INFINITY;
    // The newest frame always stays: RELAY_HISTORY_MAX_BYTES is at least the largest frame.
    while (h.frames.length - h.head > 1 && (h.frames.length - h.head > this.opts.size || h.bytes > maxBytes)) {
      const dropped = h.frames[h.head].length;
      h.head++;
      h.bytes -= dropped;
      this.#total -= dropped;
    }
    // Compacted in batches so a publish never shifts a long array.
    if (h.head > 64 && h.head * 2 > h.frames.length) {
      h.frames.splice(0, h.head);
      h.head = 0;
    }
    this.#evictBeyondCap(key);
  }

  /** Frames retained by the room. */
  retained(h: RoomHistory): number {
    return h.frames.length - h.head;
  }

  /** The newest `count` frames of the room, oldest first. */
  newest(h: RoomHistory, count: number): Buffer[] {
    return count === 0 ? [] : h.frames.slice(h.frames.length - count);
  }

  /** Drops rooms unused for the TTL. */
  sweep(now = Date.now()): void {
    const cutoff = now - this.opts.ttlSeconds * 1000;
    for (const [key, h] of this.#rooms) {
      // LRU order: the first room used after the cutoff ends the sweep.
      if (h.touched >= cutoff) break;
      this.#drop(key, h);
    }
  }

  clear(): void {
    this.#rooms.clear();
    this.#total = 0;
  }

  /** Bytes held (frames and per-room overhead), rooms held and rooms evicted by the global cap so far. */
  stats(): { bytes: number; rooms: number; evicted: number } {
    return { bytes: this.#total, rooms: this.#rooms.size, evicted: this.#evicted };
  }

  /** Evicts least recently used rooms, never `keep` (the room in use), until the total fits the cap. */
  #evictBeyondCap(keep: string): void {
    if (this.#total <= this.maxTotalBytes) return;
    for (const [key, h] of this.#rooms) {
      if (this.#total <= this.maxTotalBytes) return;
      if (key === keep) continue;
      this.#drop(key, h);
      this.#evicted++;
    }
  }

  #drop(key: string, h: RoomHistory): void {
    this.#rooms.delete(key);
    this.#total -= this.#cost(key, h);
  }

  #cost(key: string, h: RoomHistory): number {
    return ROOM_OVERHEAD_BYTES + key.length + h.bytes;
  }
}
