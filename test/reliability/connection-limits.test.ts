/**
 * Connection limits of the bundled relay against one hostile address on loopback: a flood of WebSockets is cut
 * off by the per-address limits (at their defaults), and thousands of half-open HTTP requests are dropped at the
 * headers timeout instead of being held for a minute.
 */
import type { Socket } from 'node:net';
import { closeRaw, openRaw, pool, socketCount } from '../helpers/load';
import { openHalfRequest } from '../helpers/raw-http';
import { useRelays } from '../helpers/fixtures';
import { waitUntil } from '../helpers/redis-server';

jest.setTimeout(120_000);

const relays = useRelays();
const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

/** Per-address limits at their production defaults (the process helper lifts them for tests of other things). */
const DEFAULT_LIMITS = { RELAY_MAX_CONNECTIONS_PER_ADDRESS: '', RELAY_CONNECT_RATE_PER_ADDRESS: '' };

describe('connection limits', () => {
  it('one address cannot open 5,000 WebSockets: past the burst it gets 429s, and never more than 256 at once', async () => {
    const relay = await relays.start(DEFAULT_LIMITS);
    const open: Array<Awaited<ReturnType<typeof openRaw>>> = [];
    const outcomes = await pool(5000, 100, async () => {
      try {
        open.push(await openRaw(relay.wsUrl));
        return '101';
      } catch (err) {
        const match = /upgrade refused with HTTP (\d+)/.exec((err as Error).message);
        return match ? match[1] : (err as Error).message;
      }
    });
    const tally: Record<string, number> = {};
    for (const o of outcomes) tally[o] = (tally[o] ?? 0) + 1;
    expect(Object.keys(tally).sort()).toEqual(['101', '429']);
    // 50 at once, then 10 per second: however slow this machine, far below the 5,000 of the attack.
    expect(tally['101']).toBeGreaterThanOrEqual(50);
    expect(tally['101']).toBeLessThanOrEqual(256);
    const health = await relay.health();
    expect(health.body.connections).toBe(tally['101']);
    await Promise.all(open.map((ws) => closeRaw(ws)));
  });

  it('drops 3,000 half-open HTTP requests at RELAY_HEADERS_TIMEOUT_MS instead of holding them for 60 s', async () => {
    const headersTimeoutMs = 2_000;
    const relay = await relays.start({ RELAY_HEADERS_TIMEOUT_MS: String(headersTimeoutMs), RELAY_REQUEST_TIMEOUT_MS: '3000' });
    const pid = relay.proc.pid ?? 0;
    await relay.health();
    const baseSockets = socketCount(pid);
    const answers: string[] = [];
    const closed = { count: 0 };
    await pool(3000, 200, async (i) => {
      // Headers that never end, and sockets that never send a byte.
      const s = await openHalfRequest(relay.port, i % 2 === 0 ? `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${i}\r\n` : '');
      s.setEncoding('utf8');
      s.once('data', (d: string) => answers.push(d.split('\r\n')[0]));
      s.once('close', () => closed.count++);
      sockets.push(s);
    });
    const openedAt = Date.now();
    // The deadline counts from each socket's start; the last opened here, plus node's 1 s check and scheduling slack.
    await waitUntil(() => closed.count === 3000, headersTimeoutMs + 8_000, 'the relay to close all 3,000 half-open requests');
    expect(Date.now() - openedAt).toBeLessThan(headersTimeoutMs + 8_000);
    expect(answers.length).toBe(3000);
    expect(new Set(answers)).toEqual(new Set(['HTTP/1.1 408 Request Timeout']));
    await waitUntil(() => socketCount(pid) <= baseSockets + 3, 10_000, `relay sockets back to ${baseSockets} (+3)`);
    expect((await relay.health()).status).toBe(200);
  });
});
