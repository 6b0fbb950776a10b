/**
 * The shared Redis backplane logic (redis-backplane.ts) without sockets: channel bookkeeping, envelopes, state
 * reporting, resubscription and the history/script commands it hands to its transport. The transport here is an
 * in-process pub/sub bus between backplanes of one test; what a real Redis does is covered by
 * redis-backplane.test.ts and redis-cluster.test.ts.
 */
import { expect } from '@jest/globals';
import pino from 'pino';
import { TransportBackplane, type RedisBackplaneOptions, type RedisTransport, type TransportHost } from '../../service/backplane/redis-backplane';
import { APPEND_SCRIPT, READ_SCRIPT, script } from '../../service/backplane/history';
import { PRESENCE_SCRIPTS } from '../../service/backplane/presence-store';
import {
  BackplaneUnavailableError,
  controlChannel,
  encodeEnvelope,
  extraChannel,
  roomChannel,
  roomExtraChannel,
  roomKey,
  type FramePosition,
  type Target,
} from '../../service/backplane/types';

/** Loaded on every node whatever the history settings: presence is answered by the backplane's own scripts. */
const PRESENCE_SOURCES = Object.values(PRESENCE_SCRIPTS).map((s) => s.source);

type Sent = { key: string; args: string[] };

/** An in-process bus: what one transport publishes reaches every transport subscribed to the channel. */
class Bus {
  readonly transports = new Set<BusTransport>();
  publish(channel: string, message: Buffer): number {
    let n = 0;
    for (const t of this.transports) n += t.deliver(channel, message);
    return n;
  }
}

class BusTransport implements RedisTransport {
  readonly kind = 'redis' as const;
  readonly store = 'the test bus';
  readonly publishCommand = 'PUBLISH' as const;
  host: TransportHost | undefined;
  readonly subscribed = new Set<string>();
  readonly sent: Sent[] = [];
  connected = false;
  closed = false;
  /** Reply to every `send`; a script test sets it. */
  reply: (args: string[]) => unknown = () => Buffer.from('OK');

  constructor(private readonly bus: Bus) {
    bus.transports.add(this);
  }

  start(host: TransportHost): void {
    this.host = host;
  }

  /** What a (re)connect does: prepare the node, subscribe every wanted channel, report ready. */
  async up(): Promise<void> {
    const host = this.host!;
    this.connected = true;
    await host.prepareNode((args) => this.send('', args));
    for (const channel of host.wantedChannels()) this.subscribed.add(channel);
    host.setReady(true);
  }

  down(err: Error): void {
    this.connected = false;
    this.subscribed.clear();
    this.host!.noteError(err);
    this.host!.setReady(false);
  }

  deliver(channel: string, message: Buffer): number {
    if (!this.subscribed.has(channel)) return 0;
    this.host!.onMessage(message, Buffer.from(channel));
    return 1;
  }

  send(key: string, args: Array<string | Buffer>): Promise<unknown> {
    if (!this.connected) return Promise.reject(new Error('not connected'));
    const text = args.map(String);
    this.sent.push({ key, args: text });
    return Promise.resolve(this.reply(text));
  }

  publish(channel: string, message: Buffer): Promise<unknown> {
    if (!this.connected) return Promise.reject(new Error('not connected'));
    return Promise.resolve(this.bus.publish(channel, message));
  }

  subscribe(channel: string): Promise<void> {
    if (this.connected) this.subscribed.add(channel);
    return Promise.resolve();
  }

  unsubscribe(channel: string): Promise<void> {
    this.subscribed.delete(channel);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed = true;
    this.bus.transports.delete(this);
    return Promise.resolve();
  }
}

const logger = pino({ level: 'silent' });

function make(bus: Bus, instanceId: string, extra: Partial<RedisBackplaneOptions> = {}) {
  let transport: BusTransport | undefined;
  const bp = new TransportBackplane({ url: 'redis://127.0.0.1:1', instanceId, channelPrefix: 'p', logger, ...extra }, () => {
    transport = new BusTransport(bus);
    return transport;
  });
  const frames: Array<{ target: Target; text: string; position?: FramePosition }> = [];
  const states: string[] = [];
  bp.onFrame((target, frame, position) => frames.push(position === undefined ? { target, text: frame.toString() } : { target, text: frame.toString(), position }));
  bp.onStateChange((status) => states.push(status.state));
  return { bp, transport: transport!, frames, states };
}

/** Two instances on one bus, both started and ready. */
async function readyPair(bus: Bus) {
  const pair = [make(bus, 'a'), make(bus, 'b')] as const;
  for (const { bp } of pair) void bp.start();
  await Promise.all(pair.map(({ transport }) => transport.up()));
  return pair;
}

describe('TransportBackplane (shared Redis backplane logic, no sockets)', () => {
  it('resolves start() on the first ready and reports ready, down and ready again with the reason', async () => {
    const { bp, transport, states } = make(new Bus(), 'a');
    expect(bp.kind).toBe('redis');
    let started = false;
    void bp.start().then(() => (started = true));
    expect(bp.status()).toEqual({ kind: 'redis', state: 'connecting' });
    await expect(bp.publish('r', Buffer.from('{}'))).rejects.toBeInstanceOf(BackplaneUnavailableError);
    await transport.up();
    await Promise.resolve();
    expect(started).toBe(true);
    transport.down(new Error('connection reset'));
    expect(bp.status()).toEqual({ kind: 'redis', state: 'down', lastError: 'connection reset' });
    await expect(bp.publish('r', Buffer.from('{}'))).rejects.toThrow('the message backplane is unavailable; retry shortly');
    await transport.up();
    expect(states).toEqual(['ready', 'down', 'ready']);
    expect(bp.status()).toEqual({ kind: 'redis', state: 'ready' });
  });

  it('delivers room and broadcast envelopes to other instances, drops its own plain echo, keeps its numbered frames', async () => {
    const bus = new Bus();
    const [a, b] = await readyPair(bus);
    await a.bp.subscribe('r1');
    await b.bp.subscribe('r1');
    await a.bp.publish('r1', Buffer.from('{"n":1}'));
    await a.bp.publish(null, Buffer.from('{"n":2}'));
    expect(b.frames).toEqual([{ target: 'r1', text: '{"n":1}' }, { target: null, text: '{"n":2}' }]);
    expect(a.frames).toEqual([]);
    // A numbered envelope (written by the append script) reaches every instance, its publisher included.
    const numbered = Buffer.from('a#7 {"n":3,"seq":"7","epoch":"E1"}');
    bus.publish(roomChannel('p', 'r1'), numbered);
    expect(a.frames).toEqual([{ target: 'r1', text: '{"n":3,"seq":"7","epoch":"E1"}', position: { seq: 7, epoch: 'E1' } }]);
    // Malformed envelopes and channels nobody wants are dropped.
    bus.publish(roomChannel('p', 'r1'), Buffer.from('no-space-here'));
    a.transport.subscribed.add('p:room:{other}');
    bus.publish('p:room:{other}', encodeEnvelope('b', Buffer.from('{}')));
    expect(a.frames).toHaveLength(1);
  });

  it('keeps every wanted channel across a reconnect: rooms joined while down are subscribed, rooms left are not', async () => {
    const { bp, transport } = make(new Bus(), 'a');
    void bp.start();
    await transport.up();
    await bp.subscribe('stay');
    await bp.subscribe('leave');
    await bp.listen(extraChannel('p', 'sync'), () => undefined);
    transport.down(new Error('gone'));
    await bp.subscribe('joined-while-down');
    await bp.unsubscribe('leave');
    expect(transport.subscribed.size).toBe(0);
    await transport.up();
    expect([...transport.subscribed].sort()).toEqual(
      ['p:broadcast', 'p:control', 'p:sync', roomChannel('p', 'joined-while-down'), roomChannel('p', 'stay')].sort(),
    );
  });

  it('hands raw bytes of extra channels to their handler, its own publishes included', async () => {
    const bus = new Bus();
    const [a, b] = await readyPair(bus);
    const got: string[] = [];
    await a.bp.listen(extraChannel('p', 'sync'), (m) => got.push(`a:${m.toString()}`));
    await b.bp.listen(roomExtraChannel('p', 'presence', 'r1'), (m) => got.push(`b:${m.toString()}`));
    await a.bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('hello'));
    await a.bp.publishRaw(roomExtraChannel('p', 'presence', 'r1'), Buffer.from('joined'));
    expect(got).toEqual(['a:hello', 'b:joined']);
    await expect(a.bp.listen(roomChannel('p', 'r1'), () => undefined)).resolves.toBeUndefined();
    await a.bp.subscribe('r2');
    for (const owned of [roomChannel('p', 'r2'), 'p:broadcast', controlChannel('p')]) {
      await expect(a.bp.listen(owned, () => undefined)).rejects.toThrow(
        `channel ${owned} belongs to the relay (rooms, broadcast or control); listen on a channel of its own (extraChannel, roomExtraChannel)`,
      );
    }
    await a.bp.unlisten(extraChannel('p', 'sync'));
    await a.bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('unheard'));
    expect(got).toEqual(['a:hello', 'b:joined']);
    expect(a.frames).toEqual([]);
  });

  it('hands control messages to onControl on every instance, the publisher included; unlisten cannot drop the control channel', async () => {
    const bus = new Bus();
    const [a, b] = await readyPair(bus);
    const got: string[] = [];
    a.bp.onControl((m) => got.push(`a:${m.toString()}`));
    b.bp.onControl((m) => got.push(`b:${m.toString()}`));
    await a.bp.unlisten(controlChannel('p'));
    expect(await a.bp.publishControl(Buffer.from('req'))).toBe(true);
    expect(got.sort()).toEqual(['a:req', 'b:req']);
    // Once per key: the script runs on the node owning the key, in the control channel's slot.
    a.transport.reply = () => 1;
    expect(await a.bp.publishControl(Buffer.from('req'), { key: 'k1', windowMs: 1000 })).toBe(true);
    expect(a.transport.sent.at(-1)!.key).toBe('{p:control}:idem:k1');
  });

  it('logs a handler that throws and keeps delivering', async () => {
    const bus = new Bus();
    const a = make(bus, 'a');
    void a.bp.start();
    await a.transport.up();
    let calls = 0;
    await a.bp.listen(extraChannel('p', 'sync'), () => {
      calls++;
      throw new Error('handler bug');
    });
    await a.bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('1'));
    await a.bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('2'));
    expect(calls).toBe(2);
  });

  it('loads the history scripts and registered scripts on the node before ready, and routes scripts by their first key', async () => {
    const extra = script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    const { bp, transport } = make(new Bus(), 'a', { history: { size: 10, ttlSeconds: 60, replayMax: 10 } });
    bp.registerScript(extra);
    void bp.start();
    await transport.up();
    const loaded = transport.sent.filter((s) => s.args[0] === 'SCRIPT').map((s) => s.args[2]);
    expect(loaded.sort()).toEqual([APPEND_SCRIPT.source, READ_SCRIPT.source, extra.source, ...PRESENCE_SOURCES].sort());

    // The append script answers one `<epoch>-<seq>` per message of the batch.
    transport.reply = () => [Buffer.from('1700000000000001-3')];
    expect(await bp.append('r1', Buffer.from('{"type":"message"}'))).toBe(3);
    const append = transport.sent.at(-1)!;
    expect(append.key).toBe('p:history:{r1}');
    expect(append.args.slice(0, 4)).toEqual(['EVALSHA', APPEND_SCRIPT.sha, '1', 'p:history:{r1}']);
    // Command, instance, TTL; then per message: channel, frame head, MAXLEN, remembered epoch (none yet), TTL refresh.
    expect(append.args.slice(4).map(String)).toEqual(['PUBLISH', 'a', '60', roomChannel('p', 'r1'), '{"type":"message"', '10', '', '1']);

    transport.reply = () => 5;
    const key = roomKey('p', 'counter', 'r1');
    expect(await bp.runScript(extra, [key], ['5'])).toBe(5);
    expect(transport.sent.at(-1)).toEqual({ key, args: ['EVALSHA', extra.sha, '1', key, '5'] });
    await expect(bp.runScript(extra, [], [])).rejects.toThrow('runScript needs at least one key');
    transport.down(new Error('gone'));
    await expect(bp.runScript(extra, [key], ['1'])).rejects.toBeInstanceOf(BackplaneUnavailableError);
  });

  it('loads only the presence scripts without history or registered scripts', async () => {
    const { bp, transport } = make(new Bus(), 'a');
    void bp.start();
    await transport.up();
    expect(transport.sent.map((s) => s.args.slice(0, 2))).toEqual(PRESENCE_SOURCES.map(() => ['SCRIPT', 'LOAD']));
    expect(transport.sent.map((s) => String(s.args[2])).sort()).toEqual([...PRESENCE_SOURCES].sort());
  });

  it('rejects a start that never became ready when closed, closes once, and ignores the transport afterwards', async () => {
    const { bp, transport, states } = make(new Bus(), 'a');
    const started = bp.start();
    await Promise.all([bp.close(), bp.close()]);
    await expect(started).rejects.toThrow('the redis backplane was closed before it became ready');
    expect(transport.closed).toBe(true);
    transport.host!.setReady(true);
    expect(bp.status().state).toBe('closed');
    expect(states).toEqual(['closed']);
    // start() after close() returns the same rejected start; a backplane never started cannot start after close().
    await expect(bp.start()).rejects.toThrow('the redis backplane was closed before it became ready');
    const never = make(new Bus(), 'b');
    await never.bp.close();
    await expect(never.bp.start()).rejects.toThrow('the redis backplane is closed');
  });
});

describe('per-room keys and channels', () => {
  it('put a room key on the room hash tag and refuse kinds that collide or break the tag', () => {
    expect(roomKey('app-dev', 'presence', 'lobby')).toBe('app-dev:presence:{lobby}');
    expect(roomExtraChannel('app-dev', 'typing', 'lobby')).toBe('app-dev:typing:{lobby}');
    expect(controlChannel('app-dev')).toBe('app-dev:control');
    expect(extraChannel('app-dev', 'presence')).toBe('app-dev:presence');
    for (const bad of ['', 'room', 'meta', 'history', 'idem', 'control', 'broadcast', 'a b', 'x{', 'a:b', 'a#b']) {
      expect(() => roomKey('p', bad, 'r')).toThrow(/^room key kind .* is not usable: pick a word other than room, meta, history, idem, broadcast, control, without spaces/);
      expect(() => extraChannel('p', bad)).toThrow(/^extra channel name .* is not usable/);
    }
  });
});
