/**
 * Protocol fuzzing against a relay process: at least 20,000 generated frames from many connections (invalid JSON,
 * wrong types, huge and deeply nested values, unknown types, invalid rooms, binary frames, oversized frames,
 * invalid UTF-8, fragmented messages, valid frames mixed in). The expected outcome of every frame is computed
 * from the protocol rules and compared with what the relay answered; valid clients on the same instance must
 * receive a steady stream without loss throughout. The PRNG is seeded (FUZZ_SEED to replay a run).
 */
import { useClients, useRelays } from '../helpers/fixtures';
import { joinAll, trustedEnv, watchCloses } from '../helpers/load';
import type { RelayProcess } from '../helpers/relay-process';
import { TestClient } from '../helpers/ws-client';

jest.setTimeout(180_000);

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const WORKERS = 40;
const FRAMES_PER_WORKER = 520;
const BATCH = 25;
const MAX_PAYLOAD = 16_384;
const MAX_ROOMS = 100;
/** Deepest `data` nesting the relay accepts (docs/protocol.md, "Frames"). */
const MAX_DATA_DEPTH = 100;
const ROOM_POOL = ['fz-0', 'fz-1', 'fz-2', 'fz-3', 'fz-4'];
const CLIENT_TYPES = new Set(['join', 'leave', 'publish', 'ping']);

/** mulberry32: small, fast, and the same sequence on every machine for a given seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Outcome = { readonly close: number } | { readonly reply: string };
type Payload =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'bytes'; readonly bytes: Buffer; readonly binary: boolean }
  | { readonly kind: 'fragments'; readonly parts: Buffer[]; readonly binary: boolean };
interface FuzzFrame {
  readonly label: string;
  readonly payload: Payload;
  readonly outcome: Outcome;
}

/** Canonical form of a reply, for comparing multisets: ack/pong/error, the error code, the echoed id. */
function replyKey(type: string, code: string | undefined, id: string | undefined): string {
  return `${type}|${code ?? ''}|${id ?? ''}`;
}

/** The model of one connection: what it has joined and the id the relay gave it. */
interface ConnModel {
  readonly connectionId: string;
  readonly rooms: Set<string>;
  nextId: number;
}

class Generator {
  constructor(private readonly rnd: () => number) {}

  int(min: number, max: number): number {
    return min + Math.floor(this.rnd() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.rnd() * items.length)];
  }

  chance(p: number): boolean {
    return this.rnd() < p;
  }

  /** Random text: ASCII, escapes, multi-byte characters and emoji. */
  string(maxLen: number): string {
    const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '\n', '\u0000', 'é', '中', '😀', '{', '}', '[', ':', ','];
    let s = '';
    const len = this.int(0, maxLen);
    for (let i = 0; i < len; i++) s += this.pick(alphabet);
    return s;
  }

  json(depth: number): unknown {
    const r = this.int(0, depth > 0 ? 7 : 4);
    switch (r) {
      case 0:
        return null;
      case 1:
        return this.chance(0.5);
      case 2:
        return this.pick([0, -1, 1.5, 1e21, -(2 ** 53), 123456789]);
      case 3:
      case 4:
        return this.string(20);
      case 5:
      case 6:
        return Array.from({ length: this.int(0, 4) }, () => this.json(depth - 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = this.int(0, 4); i > 0; i--) o[this.string(6)] = this.json(depth - 1);
        return o;
      }
    }
  }

  invalidRoom(): string {
    return this.pick(['', 'a'.repeat(129), 'has space', 'slash/room', 'ünïcode', '{braces}', 'tab\t', 'x'.repeat(this.int(129, 400))]);
  }
}

/** Size of the message frame the relay would build, per the wire format in docs/protocol.md. */
function messageBytes(room: string | null, dataJson: string, from: string): number {
  const roomPart = room === null ? '' : `"room":${JSON.stringify(room)},`;
  return Buffer.byteLength(`{"type":"message",${roomPart}"data":${dataJson},"from":${JSON.stringify(from)}}`);
}

/** Splits bytes into 2-5 fragments at arbitrary byte offsets (even inside a multi-byte character). */
function fragment(g: Generator, bytes: Buffer): Buffer[] {
  const cuts = new Set<number>();
  const n = g.int(1, 4);
  for (let i = 0; i < n && bytes.length > 1; i++) cuts.add(g.int(1, bytes.length - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let at = 0;
  for (const c of sorted) {
    parts.push(bytes.subarray(at, c));
    at = c;
  }
  parts.push(bytes.subarray(at));
  return parts;
}

/**
 * Builds one frame and its expected outcome. `allowClose` false excludes frames that end the connection.
 * Every frame that can carry an id gets a unique one, so replies are matched by id.
 */
function nextFrame(g: Generator, m: ConnModel, allowClose: boolean): FuzzFrame {
  const id = `f${m.nextId++}`;
  const err = (code: string, withId = true): Outcome => ({ reply: replyKey('error', code, withId ? id : undefined) });
  const text = (label: string, value: unknown, outcome: Outcome): FuzzFrame => ({
    label,
    payload: { kind: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) },
    outcome,
  });
  /** A publish whose outcome depends on the size of the frame the relay builds. */
  const publish = (label: string, room: string | null, dataJson: string): FuzzFrame => {
    const frameText = `{"type":"publish",${room === null ? '' : `"room":${JSON.stringify(room)},`}"id":"${id}","data":${dataJson}}`;
    const inbound = Buffer.byteLength(frameText);
    const outcome: Outcome =
      inbound > MAX_PAYLOAD
        ? { close: 1009 }
        : messageBytes(room, dataJson, m.connectionId) > MAX_PAYLOAD
          ? err('too_large')
          : { reply: replyKey('ack', undefined, id) };
    return { label, payload: { kind: 'text', text: frameText }, outcome };
  };

  const roll = g.int(0, allowClose ? 25 : 21);
  switch (roll) {
    case 0: {
      const candidates = ['{', '{"type":', 'undefined', "{'type':'ping'}", '{"type":"ping",}', '[1,2', 'nul', '', ' ', '{"a":1}}'];
      let t = g.chance(0.5) ? g.pick(candidates) : g.string(40);
      try {
        JSON.parse(t);
        t = `${t}{`;
      } catch {
        // already invalid
      }
      return text('invalid JSON', t, err('bad_json', false));
    }
    case 1:
      return text('not an object', g.pick(['1', '"str"', '[1,2]', 'null', 'true', '[{"type":"ping"}]']), err('bad_frame', false));
    case 2:
      return text('bad id', { type: 'ping', id: g.pick<unknown>([7, null, {}, 'i'.repeat(65), ['x']]) }, err('bad_frame', false));
    case 3:
      return text('bad type', g.chance(0.3) ? { id } : { type: g.pick<unknown>([5, null, [], {}, true]), id }, err('bad_frame'));
    case 4: {
      let type = g.chance(0.5) ? g.pick(['PING', 'Join', 'subscribe', 'message', 'ack', '', 'publish ']) : g.string(10);
      if (CLIENT_TYPES.has(type)) type = `${type}!`;
      return text('unknown type', { type, id }, err('unknown_type'));
    }
    case 5:
      return text('room of wrong type', { type: g.pick(['join', 'leave', 'publish']), room: g.pick<unknown>([1, null, [], {}]), data: 1, id },
        err('bad_frame'));
    case 6:
      return text('invalid room', { type: g.pick(['join', 'leave']), room: g.invalidRoom(), id }, err('invalid_room'));
    case 7:
      return text('publish to invalid room', { type: 'publish', room: g.invalidRoom(), data: 'x', id }, err('invalid_room'));
    case 8:
      return text('publish without data', { type: 'publish', room: g.pick(ROOM_POOL), id }, err('bad_frame'));
    case 9:
    case 10:
      return text('ping', { type: 'ping', id }, { reply: replyKey('pong', undefined, id) });
    case 11:
    case 12: {
      const room = g.chance(0.9) ? g.pick(ROOM_POOL) : `fz-solo-${g.int(0, 300)}`;
      let outcome: Outcome = { reply: replyKey('ack', undefined, id) };
      if (!m.rooms.has(room)) {
        if (m.rooms.size >= MAX_ROOMS) outcome = err('too_many_rooms');
        else m.rooms.add(room);
      }
      return text('join', { type: 'join', room, id }, outcome);
    }
    case 13: {
      const room = g.pick([...ROOM_POOL, 'fz-never-joined']);
      m.rooms.delete(room);
      return text('leave', { type: 'leave', room, id }, { reply: replyKey('ack', undefined, id) });
    }
    case 14:
    case 15:
      return publish('publish to a room', g.pick([...ROOM_POOL, 'fz-void']), JSON.stringify(g.json(3)));
    case 16:
      return publish('broadcast', null, JSON.stringify(g.chance(0.5) ? g.int(0, 1000) : g.string(8)));
    case 17: {
      // Near the limit on both sides: some fit, some make a message frame over the cap, a few exceed it inbound.
      const len = g.int(MAX_PAYLOAD - 260, MAX_PAYLOAD - 20);
      return publish('huge string', 'fz-void', JSON.stringify('h'.repeat(len)));
    }
    case 18: {
      const depth = g.chance(0.5) ? g.int(1, MAX_DATA_DEPTH + 50) : g.int(1_000, 7_000);
      const open = g.chance(0.5);
      const dataJson = open ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`;
      // Arrays nest one level per bracket: [] is depth 1; {"a":0} is depth 1.
      if (depth > MAX_DATA_DEPTH) {
        const frameText = `{"type":"publish","room":"fz-void","id":"${id}","data":${dataJson}}`;
        const outcome: Outcome = Buffer.byteLength(frameText) > MAX_PAYLOAD ? { close: 1009 } : err('bad_frame');
        return { label: `data nested ${depth} deep`, payload: { kind: 'text', text: frameText }, outcome };
      }
      return publish(`data nested ${depth} deep`, 'fz-void', dataJson);
    }
    case 19: {
      const bytes = Buffer.from(Array.from({ length: g.int(0, 300) }, () => g.int(0, 255)));
      return { label: 'binary frame', payload: { kind: 'bytes', bytes, binary: true }, outcome: err('bad_frame', false) };
    }
    case 20:
    case 21: {
      // Any of the above, fragmented into continuation frames; the outcome is that of the whole message.
      const inner = nextFrame(g, m, false);
      if (inner.payload.kind === 'fragments') return inner;
      const bytes = inner.payload.kind === 'text' ? Buffer.from(inner.payload.text) : inner.payload.bytes;
      const binary = inner.payload.kind === 'bytes' && inner.payload.binary;
      return { label: `fragmented ${inner.label}`, payload: { kind: 'fragments', parts: fragment(g, bytes), binary }, outcome: inner.outcome };
    }
    case 22:
    case 23: {
      const pad = 'p'.repeat(g.int(MAX_PAYLOAD, MAX_PAYLOAD + 20_000));
      const t = JSON.stringify({ type: 'ping', id, pad });
      return g.chance(0.5)
        ? { label: 'oversized frame', payload: { kind: 'text', text: t }, outcome: { close: 1009 } }
        : { label: 'oversized fragmented', payload: { kind: 'fragments', parts: fragment(g, Buffer.from(t)), binary: false }, outcome: { close: 1009 } };
    }
    case 24:
      return {
        label: 'oversized binary',
        payload: { kind: 'bytes', bytes: Buffer.alloc(MAX_PAYLOAD + g.int(1, 5_000), 7), binary: true },
        outcome: { close: 1009 },
      };
    default:
      return {
        label: 'invalid UTF-8 text',
        payload: { kind: 'bytes', bytes: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), binary: false },
        outcome: { close: 1007 },
      };
  }
}

function sendFrame(client: TestClient, frame: FuzzFrame): void {
  const p = frame.payload;
  if (p.kind === 'text') client.ws.send(p.text);
  else if (p.kind === 'bytes') client.ws.send(p.bytes, { binary: p.binary });
  else p.parts.forEach((part, i) => client.ws.send(part, { binary: p.binary, fin: i === p.parts.length - 1 }));
}

function repliesOf(client: TestClient): string[] {
  return client.frames
    .filter((f) => f.type === 'ack' || f.type === 'pong' || f.type === 'error')
    .map((f) => replyKey(f.type, typeof f.code === 'string' ? f.code : undefined, typeof f.id === 'string' ? f.id : undefined));
}

/**
 * Waits until the client holds at least `count` replies, or it closes, or `timeoutMs` passes; the caller compares
 * what arrived with what was expected, so a missing reply is reported as a mismatch rather than thrown.
 */
async function waitReplies(client: TestClient, count: number, timeoutMs = 20_000): Promise<void> {
  if (repliesOf(client).length >= count || client.ws.readyState !== client.ws.OPEN) return;
  let onClose: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    onClose = resolve;
    client.ws.once('close', onClose);
  });
  const enough = client.waitFor(() => repliesOf(client).length >= count, timeoutMs, true).then(
    () => undefined,
    () => undefined,
  );
  await Promise.race([enough, closed]);
  client.ws.off('close', onClose);
}

const sorted = (xs: string[]): string[] => [...xs].sort();

/** Items of `a` not matched one-for-one by items of `b`. */
function multisetMinus(a: readonly string[], b: readonly string[]): string[] {
  const left = new Map<string, number>();
  for (const x of b) left.set(x, (left.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of [...a].sort()) {
    const n = left.get(x) ?? 0;
    if (n > 0) left.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

const relays = useRelays({ per: 'block' });
const steady = useClients();
let relay: RelayProcess;

beforeAll(async () => {
  process.stdout.write(`fuzz seed ${SEED} (replay with FUZZ_SEED=${SEED})\n`);
  relay = await relays.start(trustedEnv({ RELAY_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD), RELAY_MAX_ROOMS: String(MAX_ROOMS), RELAY_ROOM_CREATE_BUDGET: '1000000' }));
  await relay.waitHealthy();
});

describe('protocol fuzzing', () => {
  it(`answers ${WORKERS * FRAMES_PER_WORKER} generated frames correctly while valid clients keep receiving`, async () => {
    const receivers = await steady.connectMany(relay, 5);
    const publisher = await steady.connect(relay);
    await joinAll(receivers, 'steady');
    const receiverCloses = watchCloses([...receivers, publisher]);
    let seq = 0;
    const stream = setInterval(() => {
      if (seq < 10_000) publisher.send({ type: 'publish', room: 'steady', data: { seq: seq++ } });
    }, 10);

    const mismatches: string[] = [];
    let sessions = 0;
    const closeCodes = new Map<number, number>();
    const worker = async (w: number): Promise<number> => {
      const g = new Generator(prng((SEED ^ Math.imul(w + 1, 0x9e3779b9)) >>> 0));
      let sent = 0;
      while (sent < FRAMES_PER_WORKER) {
        const client = await TestClient.connect(relay.wsUrl);
        sessions++;
        const model: ConnModel = { connectionId: String(client.welcome.connectionId), rooms: new Set(), nextId: 0 };
        const expected: string[] = [];
        const log: string[] = [];
        let closing: { frame: FuzzFrame } | null = null;
        try {
          while (sent < FRAMES_PER_WORKER && closing === null) {
            for (let i = 0; i < BATCH && sent < FRAMES_PER_WORKER; i++) {
              // Frames that end the connection are rare, so most sessions carry many frames.
              const frame = nextFrame(g, model, g.chance(0.12));
              sent++;
              if ('close' in frame.outcome) {
                closing = { frame };
                break;
              }
              sendFrame(client, frame);
              log.push(frame.label);
              expected.push(frame.outcome.reply);
            }
            await waitReplies(client, expected.length);
            const got = repliesOf(client);
            if (got.length !== expected.length || JSON.stringify(sorted(got)) !== JSON.stringify(sorted(expected))) {
              const missing = multisetMinus(expected, got);
              const extra = multisetMinus(got, expected);
              mismatches.push(`seed ${SEED} worker ${w} session ${sessions}: missing ${JSON.stringify(missing.slice(0, 5))}, ` +
                `unexpected ${JSON.stringify(extra.slice(0, 5))}; frames: ${log.slice(-8).join(', ')}`);
              break;
            }
          }
          if (closing !== null) {
            sendFrame(client, closing.frame);
            const { code } = await client.waitClose(20_000);
            closeCodes.set(code, (closeCodes.get(code) ?? 0) + 1);
            const want = (closing.frame.outcome as { close: number }).close;
            if (code !== want) mismatches.push(`seed ${SEED} worker ${w}: ${closing.frame.label} closed with ${code}, expected ${want}`);
          }
          // Nothing but replies and well-formed messages ever arrives.
          const odd = client.frames.filter((f) => !['ack', 'pong', 'error', 'message'].includes(f.type));
          if (odd.length > 0) mismatches.push(`seed ${SEED} worker ${w}: unexpected frames ${JSON.stringify(odd.slice(0, 3))}`);
        } finally {
          await client.close();
        }
        // Enough evidence to debug; stop generating more.
        if (mismatches.length > 20) break;
      }
      return sent;
    };
    let counts: number[];
    try {
      counts = await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    } finally {
      clearInterval(stream);
    }
    const framesSent = counts.reduce((a, b) => a + b, 0);
    process.stdout.write(`fuzz: ${framesSent} frames in ${sessions} sessions; protocol closes ${JSON.stringify(Object.fromEntries(closeCodes))}\n`);

    expect(mismatches).toEqual([]);
    expect(framesSent).toBeGreaterThanOrEqual(20_000);
    expect(relay.proc.exitCode).toBeNull();
    expect((await relay.health()).status).toBe(200);

    // The valid clients got every message of the steady stream, in order, and were never disconnected.
    publisher.send({ type: 'publish', room: 'steady', data: 'end' });
    await Promise.all(receivers.map((r) => r.waitFor((f) => f.data === 'end', 10_000)));
    const all = Array.from({ length: seq }, (_, i) => i);
    for (const r of receivers) {
      const got = r.messages().filter((m) => m.room === 'steady' && typeof m.data === 'object').map((m) => (m.data as { seq: number }).seq);
      expect(got).toEqual(all);
    }
    expect(seq).toBeGreaterThan(100);
    expect(receiverCloses.closes).toEqual([]);
  });
});
