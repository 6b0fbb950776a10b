/**
 * Hostile HTTP against a relay process: oversized headers, plain GETs on /ws, refused upgrades, and 10,000
 * connection opens and closes. The relay must answer with the right status codes and hold no sockets or
 * handles afterwards.
 */
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { signHs256Token } from '../../service/auth';
import { closeRaw, getText, metricValue, openRaw, pool, socketCount } from '../helpers/load';
import { useRelays } from '../helpers/fixtures';
import type { RelayProcess } from '../helpers/relay-process';
import { waitUntil } from '../helpers/redis-server';
import { frameText, rawUpgrade } from '../helpers/ws-client';

jest.setTimeout(180_000);

const ORIGIN = 'http://app.example.test';
const SECRET = 'reliability-secret-0123456789';
const TOKEN = signHs256Token({ sub: 'load' }, SECRET);
const OPENS = 10_000;
const CONCURRENCY = 50;
/** Sockets the relay may legitimately hold beyond its baseline (a health probe in flight, a listener re-arming). */
const SOCKET_SLACK = 3;
/** Active handles allowed beyond the baseline (the scrape's own socket). */
const HANDLE_SLACK = 3;

const relays = useRelays({ per: 'block' });
let relay: RelayProcess;

beforeAll(async () => {
  relay = await relays.start({ RELAY_ALLOWED_ORIGINS: ORIGIN, RELAY_TOKEN_SECRET: SECRET });
  await relay.waitHealthy();
});

/** Writes a raw request and resolves with the status line the server answers (or 'closed' if it hangs up silently). */
function rawRequest(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw request to port ${port}: no answer within 10000 ms`));
    }, 10_000);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data.length === 0 ? 'closed' : data.split('\r\n')[0]);
    });
    socket.end(request);
  });
}

describe('hostile HTTP', () => {
  it('answers oversized headers with 431 on plain requests and upgrades', async () => {
    const big = 'x'.repeat(20 * 1024);
    expect(await rawRequest(relay.port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${big}\r\n\r\n`)).toBe(
      'HTTP/1.1 431 Request Header Fields Too Large',
    );
    expect(
      await rawRequest(
        relay.port,
        'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Big: ${big}\r\n\r\n`,
      ),
    ).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    expect(await rawRequest(relay.port, 'NOT HTTP AT ALL\r\n\r\n')).toBe('HTTP/1.1 400 Bad Request');
    expect(relay.proc.exitCode).toBeNull();
  });

  it('answers a plain GET on /ws with 426 and refuses bad origins (403) and bad tokens (401)', async () => {
    const plain = await rawRequest(relay.port, 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(plain).toBe('HTTP/1.1 426 Upgrade Required');

    const badOrigin = await rawUpgrade(`${relay.wsUrl}?token=${TOKEN}`, { Origin: 'http://evil.example.test' });
    expect(badOrigin).toEqual({
      status: 403,
      body: JSON.stringify({ error: 'forbidden_origin', message: 'origin "http://evil.example.test" is not in RELAY_ALLOWED_ORIGINS' }),
    });
    const badToken = await rawUpgrade(`${relay.wsUrl}?token=${TOKEN}x`, { Origin: ORIGIN });
    expect(badToken.status).toBe(401);
    expect(JSON.parse(badToken.body)).toEqual({
      error: 'unauthorized',
      message: 'token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256',
    });
    const noToken = await rawUpgrade(relay.wsUrl, { Origin: ORIGIN });
    expect(noToken.status).toBe(401);
    expect((await rawUpgrade(`${relay.wsUrl}?token=${TOKEN}`, { Origin: ORIGIN })).status).toBe(101);
  });

  it('survives 10,000 connection opens and closes with correct status codes and no leaked sockets or handles', async () => {
    const pid = relay.proc.pid ?? 0;
    // Settle first: the earlier upgrade probes must be fully closed before the baseline is read.
    await waitUntil(async () => (await relay.health()).body.connections === 0, 10_000, 'no connections before the loop');
    const baseSockets = socketCount(pid);
    const baseHandles = await metricValue(relay.httpUrl, 'nodejs_active_handles_total');

    const outcomes = await pool(OPENS, CONCURRENCY, async (i) => {
      // Every tenth attempt carries a bad origin, every tenth (offset by one) a forged token.
      const kind = i % 10 === 3 ? 'bad-origin' : i % 10 === 7 ? 'bad-token' : 'good';
      const origin = kind === 'bad-origin' ? 'http://evil.example.test' : ORIGIN;
      const token = kind === 'bad-token' ? `${TOKEN}x` : TOKEN;
      try {
        const ws = await openRaw(`${relay.wsUrl}?token=${token}`, { origin });
        await closeRaw(ws);
        return `${kind}:101`;
      } catch (err) {
        const match = /upgrade refused with HTTP (\d+)/.exec((err as Error).message);
        return `${kind}:${match ? match[1] : (err as Error).message}`;
      }
    });
    const tally = new Map<string, number>();
    for (const o of outcomes) tally.set(o, (tally.get(o) ?? 0) + 1);
    expect(Object.fromEntries(tally)).toEqual({ 'good:101': 8000, 'bad-origin:403': 1000, 'bad-token:401': 1000 });

    await waitUntil(async () => (await relay.health()).body.connections === 0, 20_000, '/healthz to report 0 connections');
    expect(await metricValue(relay.httpUrl, 'relay_connections')).toBe(0);
    expect(await metricValue(relay.httpUrl, 'relay_rooms')).toBe(0);
    // Sockets close asynchronously after the close handshake; wait for the count to settle rather than sample once.
    await waitUntil(() => socketCount(pid) <= baseSockets + SOCKET_SLACK, 20_000,
      `relay sockets to return to ${baseSockets} (+${SOCKET_SLACK})`);
    await waitUntil(async () => (await metricValue(relay.httpUrl, 'nodejs_active_handles_total')) <= baseHandles + HANDLE_SLACK,
      20_000, `active handles to return to ${baseHandles} (+${HANDLE_SLACK})`);
    const health = await relay.health();
    expect(health.status).toBe(200);
    expect(relay.proc.exitCode).toBeNull();
    // And it still serves a normal client.
    const ws = await openRaw(`${relay.wsUrl}?token=${TOKEN}`, { origin: ORIGIN });
    const pong = new Promise<string>((resolve) => ws.once('message', (d: WebSocket.RawData) => resolve(frameText(d))));
    ws.send(JSON.stringify({ type: 'ping', id: 'after' }));
    expect(JSON.parse(await pong)).toEqual({ type: 'pong', id: 'after' });
    await closeRaw(ws);
    expect(await getText(`${relay.httpUrl}/healthz`)).toContain('"connections"');
  });
});
