/**
 * Requests the relay cannot parse, against the bundled relay process: each gets a 4xx and its socket closed, none
 * reaches the process's uncaught-exception path, 1,000 of them leave no descriptor behind, and SIGTERM with hostile
 * half-open sockets still exits 0 on time. An uncaught exception that does happen drains and exits 1.
 */
import { readdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pool, socketCount } from '../helpers/load';
import { UPGRADE_HEADERS, openHalfRequest, rawHttp } from '../helpers/raw-http';
import { useClients, useRelays } from '../helpers/fixtures';
import type { RelayProcess } from '../helpers/relay-process';
import { waitUntil } from '../helpers/redis-server';

jest.setTimeout(120_000);

/** The request targets of the attack, and the status each must get (a path with two leading slashes is just a path). */
const ATTACKS: ReadonlyArray<readonly [string, number]> = [
  ['//[', 400],
  ['http://[', 400],
  ['//x:99999/ws', 404],
  ['http://x:99999/ws', 400],
  ['*', 400],
];
/** Descriptors the relay may hold beyond its baseline after the flood (a scrape or health probe in flight). */
const FD_SLACK = 3;

const relays = useRelays();
const clients = useClients();
const halfOpen: Socket[] = [];
let preloadDir: string;

beforeAll(() => {
  // Loaded with --require: SIGUSR2 throws from a timer, an exception nothing in the relay catches.
  preloadDir = mkdtempSync(join(tmpdir(), 'relay-preload-'));
  writeFileSync(
    join(preloadDir, 'throw-on-usr2.js'),
    "process.on('SIGUSR2', () => setImmediate(() => { throw new Error('planted failure'); }));\n",
  );
});

afterEach(() => {
  for (const s of halfOpen.splice(0)) s.destroy();
});

afterAll(() => rmSync(preloadDir, { recursive: true, force: true }));

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function noUncaught(relay: RelayProcess): void {
  const bad = relay.logs.filter((l) => /uncaught exception|unhandled rejection/.test(l));
  expect(bad).toEqual([]);
}

describe('requests the relay cannot parse', () => {
  it('get a 4xx and a closed socket, as upgrades and as plain requests, and never reach uncaughtException', async () => {
    const relay = await relays.start();
    for (const [target, status] of ATTACKS) {
      const upgrade = await rawHttp(relay.port, `GET ${target} HTTP/1.1\r\n${UPGRADE_HEADERS}\r\n`, 5_000);
      expect([target, upgrade.statusLine]).toEqual([target, expect.stringMatching(new RegExp(`^HTTP/1\\.1 ${status} `))]);
      const plain = await rawHttp(relay.port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, 5_000);
      expect([target, plain.statusLine]).toEqual([target, expect.stringMatching(new RegExp(`^HTTP/1\\.1 ${status} `))]);
    }
    // Garbage the HTTP parser itself refuses still gets its 400 and a close.
    expect((await rawHttp(relay.port, 'GET /ws HTTP/1.1\r\nBad Header Line\r\n\r\n', 5_000)).statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect((await relay.health()).status).toBe(200);
    noUncaught(relay);
  });

  it('1,000 of them leave no descriptors or sockets behind', async () => {
    const relay = await relays.start();
    const pid = relay.proc.pid ?? 0;
    await relay.health();
    const baseFds = fdCount(pid);
    const baseSockets = socketCount(pid);
    const statuses = await pool(1000, 50, async (i) => {
      const [target] = ATTACKS[i % ATTACKS.length];
      return (await rawHttp(relay.port, `GET ${target} HTTP/1.1\r\n${UPGRADE_HEADERS}\r\n`, 10_000)).statusLine.split(' ')[1];
    });
    expect(statuses.filter((s) => !/^4\d\d$/.test(s))).toEqual([]);
    await waitUntil(() => fdCount(pid) <= baseFds + FD_SLACK && socketCount(pid) <= baseSockets + FD_SLACK, 10_000,
      `descriptors back to ${baseFds} (+${FD_SLACK}) and sockets to ${baseSockets} (+${FD_SLACK})`);
    noUncaught(relay);
  });
});

describe('shutdown with hostile sockets', () => {
  it('SIGTERM with leaked upgrade attempts and slowloris headers still exits 0 within the drain window plus a second', async () => {
    const drainWindowMs = 2_000;
    const relay = await relays.start({ RELAY_DRAIN_WINDOW_MS: String(drainWindowMs), RELAY_SHUTDOWN_TIMEOUT_MS: '15000' });
    const open = [await clients.connect(relay), await clients.connect(relay), await clients.connect(relay)];
    for (let i = 0; i < 20; i++) {
      // The attack's leaked upgrades (never finished reading), headers that never end, and sockets that say nothing.
      halfOpen.push(await openHalfRequest(relay.port, `GET ${ATTACKS[i % ATTACKS.length][0]} HTTP/1.1\r\n${UPGRADE_HEADERS}\r\n`));
      halfOpen.push(await openHalfRequest(relay.port, `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(i)}`));
      halfOpen.push(await openHalfRequest(relay.port, ''));
    }
    const started = Date.now();
    relay.signal('SIGTERM');
    const exit = await relay.waitExit(20_000);
    const elapsed = Date.now() - started;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(elapsed).toBeLessThan(drainWindowMs + 1_000);
    for (const c of open) expect(await c.waitClose()).toEqual({ code: 1001, reason: 'server shutting down' });
    await relay.waitLog((l) => l.msg === 'shutdown complete');
  });

  it('an uncaught exception drains the clients with 1001, closes the backplane and exits 1', async () => {
    const relay = await relays.start({
      NODE_OPTIONS: `--require ${join(preloadDir, 'throw-on-usr2.js')}`,
      RELAY_DRAIN_WINDOW_MS: '500',
      RELAY_SHUTDOWN_TIMEOUT_MS: '10000',
    });
    const [a, b] = [await clients.connect(relay), await clients.connect(relay)];
    relay.signal('SIGUSR2');
    expect(await a.waitClose()).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await b.waitClose()).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await relay.waitExit(15_000)).toEqual({ code: 1, signal: null });
    const fatal = await relay.waitLog((l) => l.msg === 'uncaught exception');
    expect(fatal).toMatchObject({ level: 60, err: { message: 'planted failure' } });
    await relay.waitLog((l) => l.msg === 'shutdown complete' && l.exitCode === 1);
  });
});
