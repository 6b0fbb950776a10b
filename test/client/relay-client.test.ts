import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { RelayClient, type RelayClientEvents } from '../../service/public/relay-client';
import { freePort } from '../../app/free-port';
import { RELAY_CLIENT_ENV as RELAY_ENV, nextEvent, rejection, relayClients } from '../helpers/client-events';
import { useClients, useRelays } from '../helpers/fixtures';
import type { RelayProcess } from '../helpers/relay-process';

// The client module exactly as the demo page loads it, driven from Node against bundled relay processes.

const relays = useRelays();
const clients = useClients();
const client = relayClients(clients);

describe('relay-client.js module formats', () => {
  it('exports { RelayClient } to CommonJS and defines the global RelayClient for a <script> tag', () => {
    // require(), not import: the plain CommonJS exports are what Node users get. requireActual is jest's require,
    // so it returns the very module instance the import above loaded.
    const cjs = jest.requireActual<object>('../../service/public/relay-client.js');
    expect(Object.keys(cjs)).toEqual(['RelayClient']);
    expect((cjs as { RelayClient: unknown }).RelayClient).toBe(RelayClient);

    const source = readFileSync(join(__dirname, '..', '..', 'service', 'public', 'relay-client.js'), 'utf8');
    const browserLike: { self?: unknown; RelayClient?: unknown } = {};
    browserLike.self = browserLike; // like a page: no module object, `self` is the global
    runInNewContext(source, browserLike);
    expect(typeof browserLike.RelayClient).toBe('function');
  });
});

describe('RelayClient options', () => {
  it('fails when urls, WebSocket and backoff are invalid, listing every problem', () => {
    // Some Node versions and jest environments provide a global WebSocket; this case is about a runtime without one.
    const global = globalThis as { WebSocket?: unknown };
    const saved = Object.getOwnPropertyDescriptor(global, 'WebSocket');
    delete global.WebSocket;
    let thrown: unknown;
    try {
      new RelayClient({ urls: ['http://127.0.0.1/ws'], backoff: { initialMs: 0, maxMs: 10 } });
    } catch (err) {
      thrown = err;
    } finally {
      if (saved) Object.defineProperty(global, 'WebSocket', saved);
    }
    expect(() => {
      throw thrown;
    }).toThrow(
      'Invalid RelayClient options: options.urls[0] must be a ws:// or wss:// URL, got "http://127.0.0.1/ws"; ' +
        'options.WebSocket must be a WebSocket constructor (in Node pass require("ws")); none was given and there is no global WebSocket; ' +
        'options.backoff.initialMs must be a number > 0, got 0.',
    );
  });

  it('fails when urls is empty, with code invalid_option', () => {
    let caught: unknown;
    try {
      new RelayClient({ urls: [], WebSocket });
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({
      code: 'invalid_option',
      message: 'Invalid RelayClient options: options.urls must be a non-empty array of ws:// or wss:// URLs, got [].',
    });
  });

  it('rejects requests with not_connected before connect()', async () => {
    const c = client(['ws://127.0.0.1:9/ws']);
    const err = await rejection(c.join('lobby'));
    expect(err.code).toBe('not_connected');
    expect(err.message).toBe('join: not connected to the relay (state "idle"); wait for the "open" event.');
  });
});

describe('RelayClient against a relay', () => {
  let relay: RelayProcess;
  beforeEach(async () => {
    relay = await relays.start(RELAY_ENV);
  });

  it('connects, reports the welcome and walks through the states', async () => {
    const c = client([relay.wsUrl]);
    const states: string[] = [];
    c.on('state', (s) => states.push(s));
    const opening = nextEvent(c, 'open');
    const welcome = await c.connect();
    expect(await opening).toBe(welcome);
    expect(welcome).toEqual({
      connectionId: expect.any(String),
      instanceId: expect.any(String),
      // relay-client speaks protocol 2; its publishes carry ids, so they are still acked (next test).
      protocol: 2,
      url: relay.wsUrl,
    });
    expect(states).toEqual(['connecting', 'open']);
    expect(c.state).toBe('open');
    expect(await c.ping()).toBeGreaterThanOrEqual(0);
  });

  it('resolves join and publish on their acks and delivers room messages to members', async () => {
    const a = client([relay.wsUrl]);
    const b = client([relay.wsUrl]);
    const [wa] = await Promise.all([a.connect(), b.connect()]);
    await expect(a.join('lobby')).resolves.toMatchObject({ type: 'ack' });
    await b.join('lobby');
    expect(a.rooms()).toEqual(['lobby']);

    const received = nextEvent(b, 'message', (m) => m.data === 'hello');
    await expect(a.publish('lobby', 'hello')).resolves.toMatchObject({ type: 'ack' });
    expect(await received).toMatchObject({ type: 'message', room: 'lobby', data: 'hello', from: wa.connectionId });

    const broadcast = nextEvent(b, 'message', (m) => m.room === undefined);
    await a.publish(null, { n: 1 });
    expect(await broadcast).toMatchObject({ data: { n: 1 }, from: wa.connectionId });

    await a.leave('lobby');
    expect(a.rooms()).toEqual([]);
  });

  it('rejects with the code of the relay error frame', async () => {
    const c = client([relay.wsUrl]);
    await c.connect();
    const err = await rejection(c.join('no spaces allowed'));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('invalid_room');
    expect(err.message).toBe('room "no spaces allowed" is invalid; use 1-128 characters of A-Z a-z 0-9 : _ . -');
    expect(c.rooms()).toEqual([]);
    // The connection survives a rejected request.
    await expect(c.join('fine')).resolves.toMatchObject({ type: 'ack' });
  });

  it('rejects a request with timeout when the relay does not answer in time', async () => {
    const c = client([relay.wsUrl], { requestTimeoutMs: 300 });
    await c.connect();
    relay.signal('SIGSTOP'); // frozen: the socket stays open but nothing answers
    const err = await rejection(c.ping());
    expect(err.code).toBe('timeout');
    expect(err.message).toBe(`ping (id 1): no answer from ${relay.wsUrl} within 300 ms.`);
    relay.signal('SIGKILL');
    await relay.waitExit();
  });

  it('rejects pending requests with disconnected when the connection drops', async () => {
    const c = client([relay.wsUrl], { backoff: { initialMs: 5_000, maxMs: 5_000 } });
    await c.connect();
    relay.signal('SIGSTOP');
    const pending = c.publish('lobby', 'never acked');
    const closed = nextEvent(c, 'close');
    relay.signal('SIGKILL');
    const err = await rejection(pending);
    expect(err.code).toBe('disconnected');
    expect(err.message).toBe(`The connection to ${relay.wsUrl} closed before the relay answered.`);
    expect(await closed).toMatchObject({ url: relay.wsUrl, willReconnect: true });
    expect(c.state).toBe('reconnecting');
  });

  it('close() rejects pending requests with closed and stops reconnecting', async () => {
    const c = client([relay.wsUrl]);
    await c.connect();
    relay.signal('SIGSTOP');
    const pending = c.ping();
    const reconnects: unknown[] = [];
    c.on('reconnecting', (e) => reconnects.push(e));
    const closed = nextEvent(c, 'close');
    c.close();
    const err = await rejection(pending);
    expect(err.code).toBe('closed');
    expect(err.message).toBe('The client was closed before the relay answered.');
    expect(await closed).toEqual({ code: 1000, reason: 'client closed', url: relay.wsUrl, willReconnect: false });
    expect(c.state).toBe('closed');
    expect(reconnects).toEqual([]);
    await expect(rejection(c.join('lobby'))).resolves.toMatchObject({ code: 'closed' });
    relay.signal('SIGKILL');
    await relay.waitExit();
  });
});

describe('RelayClient reconnect', () => {
  it('reconnects with growing, jittered backoff after the relay is killed and restarted, and rejoins its rooms', async () => {
    const port = await freePort();
    const env = { ...RELAY_ENV, PORT: String(port) };
    let relay = await relays.start(env);
    const c = client([relay.wsUrl], { backoff: { initialMs: 40, maxMs: 160 } });
    const first = await c.connect();
    await c.join('room-1');
    await c.join('room-2');

    const attempts: RelayClientEvents['reconnecting'][] = [];
    c.on('reconnecting', (e) => attempts.push(e));
    const states: string[] = [];
    c.on('state', (s) => states.push(s));
    const fourthAttempt = nextEvent(c, 'reconnecting', (e) => e.attempt === 4);
    relay.signal('SIGKILL');
    await relay.waitExit();
    await fourthAttempt;

    // Ceilings 40, 80, 160, 160 ms; each delay is between half the ceiling and the ceiling.
    const ceilings = [40, 80, 160, 160];
    attempts.slice(0, 4).forEach((e, i) => {
      expect(e.attempt).toBe(i + 1);
      expect(e.url).toBe(relay.wsUrl);
      expect(e.delayMs).toBeGreaterThanOrEqual(ceilings[i] / 2);
      expect(e.delayMs).toBeLessThanOrEqual(ceilings[i]);
    });
    expect(states[0]).toBe('reconnecting');

    const reopened = nextEvent(c, 'open');
    relay = await relays.start(env);
    const second = await reopened;
    expect(second.connectionId).not.toBe(first.connectionId);
    expect(c.state).toBe('open');
    expect(c.rooms().sort()).toEqual(['room-1', 'room-2']);

    // The rooms were rejoined on the new connection before 'open': a publish from another client reaches it.
    const other = client([relay.wsUrl]);
    await other.connect();
    const got = nextEvent(c, 'message', (m) => m.room === 'room-2' && m.data === 'after restart');
    await other.publish('room-2', 'after restart');
    expect(await got).toMatchObject({ from: other.welcome?.connectionId });
  });

  it('fails over to the next URL and rejoins its rooms there', async () => {
    const a = await relays.start(RELAY_ENV);
    const b = await relays.start(RELAY_ENV);
    const c = client([a.wsUrl, b.wsUrl]);
    await c.connect();
    expect(c.url).toBe(a.wsUrl);
    await c.join('lobby');

    const reconnecting = nextEvent(c, 'reconnecting');
    const reopened = nextEvent(c, 'open');
    a.signal('SIGTERM');
    expect(await reconnecting).toMatchObject({ attempt: 1, url: b.wsUrl });
    expect(await reopened).toMatchObject({ url: b.wsUrl });
    expect(c.url).toBe(b.wsUrl);

    const other = client([b.wsUrl]);
    await other.connect();
    const got = nextEvent(c, 'message', (m) => m.data === 'on b');
    await other.publish('lobby', 'on b');
    await got;
    await a.waitExit();
  });
});
