/**
 * Helpers for the recovery tests: joins that return the ack, a client that keeps its place in each room and
 * rejoins with `since` on another relay, and checks that a sequence of numbered messages has no gap or duplicate.
 */
import { TestClient, frameText, type Frame } from '../helpers/ws-client';

export const WAIT_MS = 30_000;

export interface Position {
  seq: string;
  epoch: string;
}

let nextId = 0;

/**
 * A room's position as Redis holds it: the history stream's last id is `<epoch>-<seq>`. Takes the output of
 * `redis-cli XINFO STREAM <key>`; null when the stream does not exist.
 */
export function streamPosition(xinfo: string): Position | null {
  const lines = xinfo.split('\n').map((l) => l.trim());
  const at = lines.indexOf('last-generated-id');
  const match = at < 0 ? null : /^(\d+)-(\d+)$/.exec(lines[at + 1] ?? '');
  return match === null ? null : { epoch: match[1], seq: match[2] };
}

/** Sends a join (with `since` when given) and returns the ack or error that answers it. */
export async function join(client: TestClient, room: string, since?: Position): Promise<Frame> {
  const id = `j${++nextId}`;
  return client.request(since === undefined ? { type: 'join', room, id } : { type: 'join', room, id, since }, WAIT_MS);
}

/** Publishes and resolves with the relay's answer (ack or error). */
export async function publish(client: TestClient, room: string | null, data: unknown): Promise<Frame> {
  const id = `p${++nextId}`;
  return client.request(room === null ? { type: 'publish', data, id } : { type: 'publish', room, data, id }, WAIT_MS);
}

/** Publishes every item in order, pipelined, and asserts every ack. */
export async function publishAll(client: TestClient, room: string, items: readonly unknown[]): Promise<void> {
  const replies = await Promise.all(items.map((data) => publish(client, room, data)));
  const refused = replies.filter((r) => r.type !== 'ack');
  expect(refused).toEqual([]);
}

/** The room's messages a client received, in arrival order. */
export function roomMessages(client: TestClient, room: string): Frame[] {
  return client.messages().filter((m) => m.room === room);
}

/** Position of the last message of `room` the client received, or the position of its last join ack for that room. */
export function lastPosition(client: TestClient, room: string, ack?: Frame): Position {
  const msgs = roomMessages(client, room);
  const last = msgs[msgs.length - 1];
  if (last !== undefined) return { seq: String(last.seq), epoch: String(last.epoch) };
  const position = ack?.position as Position | undefined;
  if (position === undefined) throw new Error(`no message and no ack position for room ${room}`);
  return position;
}

/** Resolves once `pred` holds, checking after every frame the client receives; bounded by `timeoutMs`. */
export async function waitForCondition(client: TestClient, pred: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
  if (pred()) return;
  await client.waitFor(() => pred(), timeoutMs, true).catch((err: unknown) => {
    throw new Error(`waiting for ${what}: ${(err as Error).message}`);
  });
}

/** Numbers of a room's frames, asserted to be one epoch, strictly consecutive from `from + 1`: no gap, no duplicate. */
export function expectConsecutive(frames: readonly Frame[], from: number, epoch: string): number[] {
  const seqs = frames.map((f) => Number(f.seq));
  expect(frames.map((f) => f.epoch)).toEqual(frames.map(() => epoch));
  expect(seqs).toEqual(Array.from({ length: frames.length }, (_, i) => from + 1 + i));
  return seqs;
}

/**
 * A client of one room set that survives disconnects: every connection's frames are kept, and `reconnect(url)`
 * rejoins each room with `since` = the last message it received there (or its last ack's position).
 */
export class RecoveringClient {
  /** Every message of every connection, in arrival order. */
  readonly received: Frame[] = [];
  readonly acks: Frame[] = [];
  private readonly positions = new Map<string, Position>();
  /** join id → room, so an ack (which names no room) updates the right position. */
  private readonly pendingRoom = new Map<string, string>();
  private readonly waiters = new Set<() => void>();
  private client: TestClient | undefined;

  constructor(private readonly rooms: readonly string[]) {}

  get current(): TestClient {
    if (this.client === undefined) throw new Error('RecoveringClient is not connected');
    return this.client;
  }

  /** Connects to `url` and joins every room, with `since` when it has a position there; returns the acks. */
  async connect(url: string): Promise<Frame[]> {
    const client = await TestClient.connect(url);
    this.client = client;
    // Frames are read here, in arrival order, so positions follow exactly what the socket delivered.
    client.ws.on('message', (data) => this.observe(JSON.parse(frameText(data)) as Frame));
    const acks: Frame[] = [];
    for (const room of this.rooms) {
      const id = `j${++nextId}`;
      this.pendingRoom.set(id, room);
      const since = this.positions.get(room);
      acks.push(await client.request(since === undefined ? { type: 'join', room, id } : { type: 'join', room, id, since }, WAIT_MS));
    }
    this.acks.push(...acks);
    return acks;
  }

  /** Resolves once `pred` holds, re-checked after every frame this client records; bounded by `timeoutMs`. */
  waitUntil(pred: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`RecoveringClient: ${what} did not happen within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  private observe(f: Frame): void {
    this.record(f);
    for (const check of [...this.waiters]) check();
  }

  private record(f: Frame): void {
    if (f.type === 'message') {
      this.received.push(f);
      if (typeof f.room === 'string') this.positions.set(f.room, { seq: String(f.seq), epoch: String(f.epoch) });
      return;
    }
    // A first join, or one that could not recover, continues from the ack's position; a recovered one already
    // stands at the last replayed message, which is that position.
    if (f.type === 'ack' && f.recovered !== true && typeof f.id === 'string' && f.id.startsWith('j')) {
      const position = f.position as Position | undefined;
      const room = this.pendingRoom.get(f.id);
      if (position !== undefined && room !== undefined) this.positions.set(room, position);
    }
  }

  /** The client's position in a room. */
  position(room: string): Position | undefined {
    return this.positions.get(room);
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }
}
