/**
 * Appends to the Redis history in batches: every append asked for in one turn of the event loop goes out as one
 * EVALSHA of the append script per hash tag group (one group in standalone Redis, one per room's hash tag in a
 * cluster, so each call touches one slot). The batcher remembers each room's epoch from the script's replies, so
 * the script's fast path (XADD + PUBLISH per message) needs no read, and asks the script to refresh a room's TTL
 * only once per tenth of the TTL.
 */
import { APPEND_SCRIPT, historyKey, parseAppendId, runScript, streamMaxlen, type HistoryOptions, type HistoryPosition } from './history';
import { describeError, withTimeout } from './redis-common';
import { BackplaneUnavailableError, type FramePosition, type Target } from './types';

/** Most messages in one script call; larger turns are split (bounds the script's run time and argument count). */
export const MAX_BATCH = 128;
/** Rooms whose epoch is remembered; past this the memory starts again (each room then costs one epoch read). */
export const MAX_REMEMBERED_ROOMS = 20_000;

/** Sends one script call; `key` is a key of the call (a cluster routes on it). */
export type BatchSend = (key: string, args: Array<string | Buffer>) => Promise<unknown>;

export interface AppendBatcherOptions {
  readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  readonly prefix: string;
  readonly instanceId: string;
  readonly history: HistoryOptions;
  /** Whether keys of different hash tags may share a call (standalone Redis) or not (cluster). */
  readonly oneSlot: boolean;
  /** Names the store in errors ("redis", "the redis cluster"). */
  readonly store: string;
  readonly timeoutMs: number;
}

interface Pending {
  readonly key: string;
  readonly channel: string;
  readonly head: Buffer;
  readonly maxlen: string;
  resolve(seq: number, epoch: string): void;
  reject(err: Error): void;
}

interface RoomMemo {
  epoch: string;
  /** Date.now() of the last TTL refresh asked for; 0 = none yet. */
  refreshedAt: number;
}

export class AppendBatcher {
  readonly #opts: AppendBatcherOptions;
  readonly #refreshEveryMs: number;
  readonly #groups = new Map<string, Pending[]>();
  readonly #rooms = new Map<string, RoomMemo>();
  #scheduled = false;

  constructor(opts: AppendBatcherOptions) {
    this.#opts = opts;
    this.#refreshEveryMs = opts.history.ttlSeconds * 100;
  }

  /** Queues one message for `target`; resolves with its seq once it is stored and published. */
  append(target: Target, channel: string, frame: Buffer, send: BatchSend): Promise<number> {
    return new Promise<number>((resolve, reject) => this.#queue(target, channel, frame, send, resolve, reject));
  }

  /** As append(), resolving with the epoch too (the server API answers both). */
  appendPosition(target: Target, channel: string, frame: Buffer, send: BatchSend): Promise<FramePosition> {
    return new Promise<FramePosition>((resolve, reject) => this.#queue(target, channel, frame, send, (seq, epoch) => resolve({ seq, epoch }), reject));
  }

  #queue(target: Target, channel: string, frame: Buffer, send: BatchSend, resolve: Pending['resolve'], reject: Pending['reject']): void {
    const key = historyKey(this.#opts.prefix, target);
    const head = frame.subarray(0, frame.length - 1);
    // Broadcasts are numbered but not stored: no join can ask for them.
    const maxlen = target === null ? '0' : String(streamMaxlen(this.#opts.history, head.length));
    const group = this.#opts.oneSlot ? '' : (target ?? '');
    let list = this.#groups.get(group);
    if (list === undefined) this.#groups.set(group, (list = []));
    list.push({ key, channel, head, maxlen, resolve, reject });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush(send));
    }
  }

  /** A join read the room's position (and refreshed its TTL): later appends take the fast path. */
  noteRead(room: string, position: HistoryPosition): void {
    this.#remember(historyKey(this.#opts.prefix, room), position.epoch, Date.now());
  }

  #flush(send: BatchSend): void {
    this.#scheduled = false;
    const now = Date.now();
    for (const list of this.#groups.values()) {
      for (let i = 0; i < list.length; i += MAX_BATCH) void this.#run(list.slice(i, i + MAX_BATCH), now, send);
    }
    this.#groups.clear();
  }

  async #run(batch: Pending[], now: number, send: BatchSend): Promise<void> {
    const args: Array<string | Buffer> = [this.#opts.publishCommand, this.#opts.instanceId, String(this.#opts.history.ttlSeconds)];
    const refreshed = new Set<string>();
    for (const p of batch) {
      const memo = this.#rooms.get(p.key);
      const refresh = memo === undefined || (now - memo.refreshedAt >= this.#refreshEveryMs && !refreshed.has(p.key));
      if (refresh) refreshed.add(p.key);
      args.push(p.channel, p.head, p.maxlen, memo?.epoch ?? '', refresh ? '1' : '0');
    }
    const keys = batch.map((p) => p.key);
    let reply: unknown;
    try {
      const ms = this.#opts.timeoutMs;
      reply = await withTimeout(runScript((a) => send(keys[0], a), APPEND_SCRIPT, keys, args), ms, () => new Error(`no reply within ${ms} ms`));
      if (!Array.isArray(reply) || reply.length !== batch.length) throw new Error(`unexpected history append reply: ${String(reply)}`);
    } catch (err) {
      const error = new BackplaneUnavailableError(`publishing to ${this.#opts.store} failed (${describeError(err)}); retry shortly`);
      for (const p of batch) p.reject(error);
      return;
    }
    batch.forEach((p, i) => {
      let position: HistoryPosition;
      try {
        position = parseAppendId((reply as unknown[])[i]);
      } catch (err) {
        p.reject(new BackplaneUnavailableError(`publishing to ${this.#opts.store} failed (${describeError(err)}); retry shortly`));
        return;
      }
      const before = this.#rooms.get(p.key);
      // A room found in another epoch than remembered is refreshed by the next append (its TTL is someone else's).
      const refreshedAt = refreshed.has(p.key) ? now : before?.epoch === position.epoch ? before.refreshedAt : 0;
      this.#remember(p.key, position.epoch, refreshedAt);
      p.resolve(Number(position.seq), position.epoch);
    });
  }

  #remember(key: string, epoch: string, refreshedAt: number): void {
    const memo = this.#rooms.get(key);
    if (memo !== undefined) {
      memo.epoch = epoch;
      memo.refreshedAt = refreshedAt;
      return;
    }
    if (this.#rooms.size >= MAX_REMEMBERED_ROOMS) this.#rooms.clear();
    this.#rooms.set(key, { epoch, refreshedAt });
  }
}
