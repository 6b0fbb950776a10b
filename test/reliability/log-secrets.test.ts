/**
 * No secret in any log line at any level: the bundled relay runs at every LOG_LEVEL against a Redis with a
 * password, every code path that logs a client's mistake is driven with a planted token (bad and good tokens,
 * bad origins, malformed and oversized requests, slow headers, protocol errors, oversized frames), and all of the
 * process's output is searched for the token, the Redis password and the token secret, in every encoding a log
 * line could carry them (text, base64, hex, URL encoding, and the byte list of a serialised Buffer).
 */
import { randomBytes } from 'node:crypto';
import { signHs256Token } from '../../service/auth';
import { UPGRADE_HEADERS, openHalfRequest, rawHttp, waitClosed } from '../helpers/raw-http';
import { freePort } from '../../app/free-port';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import type { RedisServer } from '../helpers/redis-server';
import type { RelayProcess } from '../helpers/relay-process';
import { rawUpgrade } from '../helpers/ws-client';

jest.setTimeout(180_000);

const unique = (label: string): string => `${label}${randomBytes(9).toString('hex')}`;
const TOKEN_SECRET = unique('tokensecret');
// The "@" is what the old redaction stopped at, leaving the rest of the password in the log.
const REDIS_PASSWORD = `pw@${unique('redispass')}`;
const WRONG_PASSWORD = `pw@${unique('wrongpass')}`;
const ORIGIN = 'http://app.example.test';
const BAD_TOKEN = signHs256Token({ sub: unique('badsub'), exp: Math.floor(Date.now() / 1000) + 3600 }, 'not-the-secret-0123456789');
const GOOD_TOKEN = signHs256Token({ sub: unique('goodsub'), exp: Math.floor(Date.now() / 1000) + 3600 }, TOKEN_SECRET);
const EXPIRED_TOKEN = signHs256Token({ sub: unique('oldsub'), exp: Math.floor(Date.now() / 1000) - 60 }, TOKEN_SECRET);
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const redisServers = useRedis({ per: 'block' });
const relays = useRelays();
const clients = useClients();
let redis: RedisServer;

beforeAll(async () => {
  redis = await redisServers.start({ password: REDIS_PASSWORD });
});

/** Every way a secret could sit in a JSON log line: as text, encoded, or as the byte list of a Buffer. */
function spellings(secret: string): string[] {
  const bytes = Buffer.from(secret);
  return [secret, bytes.toString('base64'), bytes.toString('base64url'), bytes.toString('hex'), encodeURIComponent(secret), bytes.join(',')];
}

/** The distinctive part of each secret, so a partial leak (a redaction that stops early) is caught too. */
const SECRETS: Record<string, string[]> = {
  'bad token': [BAD_TOKEN, BAD_TOKEN.split('.')[2]],
  'good token': [GOOD_TOKEN, GOOD_TOKEN.split('.')[2]],
  'expired token': [EXPIRED_TOKEN, EXPIRED_TOKEN.split('.')[2]],
  'token secret': [TOKEN_SECRET],
  'Redis password': [REDIS_PASSWORD, REDIS_PASSWORD.split('@')[1]],
  'wrong Redis password': [WRONG_PASSWORD, WRONG_PASSWORD.split('@')[1]],
};

function leaks(logs: readonly string[]): string[] {
  const text = logs.join('\n');
  const found: string[] = [];
  for (const [name, values] of Object.entries(SECRETS)) {
    for (const value of values) {
      for (const spelled of spellings(value)) if (text.includes(spelled)) found.push(`${name} (${spelled.slice(0, 24)}…)`);
    }
  }
  return found;
}

/** Fixed ports: above LOG_LEVEL=info the relay does not log the ones it picked. */
async function relayEnv(level: string, password: string): Promise<Record<string, string>> {
  return {
    PORT: String(await freePort()),
    RELAY_METRICS_PORT: String(await freePort()),
    LOG_LEVEL: level,
    REDIS_URL: `redis://:${password}@127.0.0.1:${redis.port}`,
    RELAY_TOKEN_SECRET: TOKEN_SECRET,
    RELAY_ALLOWED_ORIGINS: ORIGIN,
    RELAY_HEADERS_TIMEOUT_MS: '1000',
    RELAY_REQUEST_TIMEOUT_MS: '1000',
    RELAY_MAX_PAYLOAD_BYTES: '4096',
    RELAY_DRAIN_WINDOW_MS: '100',
  };
}

/** Every code path that logs what a client did wrong, each carrying the planted token somewhere. */
async function misbehave(relay: RelayProcess): Promise<void> {
  const ws = relay.wsUrl;
  const port = relay.port;
  expect((await rawUpgrade(ws, { Origin: ORIGIN })).status).toBe(401);
  expect((await rawUpgrade(`${ws}?token=${BAD_TOKEN}`, { Origin: ORIGIN })).status).toBe(401);
  expect((await rawUpgrade(`${ws}?token=${EXPIRED_TOKEN}`, { Origin: ORIGIN })).status).toBe(401);
  expect((await rawUpgrade(`${ws}?token=${GOOD_TOKEN}`, { Origin: 'http://evil.example.test' })).status).toBe(403);
  expect((await rawUpgrade(`${relay.httpUrl.replace('http', 'ws')}/nope?token=${BAD_TOKEN}`, { Origin: ORIGIN })).status).toBe(404);
  const secretHeaders = `Cookie: session=${BAD_TOKEN}\r\nAuthorization: Bearer ${GOOD_TOKEN}\r\n`;
  for (const target of [`//[?token=${BAD_TOKEN}`, `http://[?token=${GOOD_TOKEN}`, `//x:99999/ws?token=${BAD_TOKEN}`]) {
    expect((await rawHttp(port, `GET ${target} HTTP/1.1\r\n${UPGRADE_HEADERS}${secretHeaders}\r\n`)).statusLine).toMatch(/^HTTP\/1\.1 4\d\d /);
    expect((await rawHttp(port, `GET ${target} HTTP/1.1\r\nHost: x\r\n${secretHeaders}Connection: close\r\n\r\n`)).statusLine).toMatch(
      /^HTTP\/1\.1 4\d\d /,
    );
  }
  // The HTTP parser's own refusals: their errors carry the raw request bytes.
  expect((await rawHttp(port, `GET /ws?token=${BAD_TOKEN} HTTP/1.1\r\n${secretHeaders}Bad Header Line\r\n\r\n`)).statusLine).toBe(
    'HTTP/1.1 400 Bad Request',
  );
  expect((await rawHttp(port, `GET /?token=${GOOD_TOKEN} HTTP/1.1\r\n${secretHeaders}X-Big: ${'x'.repeat(20_000)}\r\n\r\n`)).statusLine).toBe(
    'HTTP/1.1 431 Request Header Fields Too Large',
  );
  const slow = await openHalfRequest(port, `GET /ws?token=${GOOD_TOKEN} HTTP/1.1\r\n${secretHeaders}`);
  await waitClosed(slow, 10_000);
  for (const [method, path] of [['GET', `/ws?token=${GOOD_TOKEN}`], ['POST', `/healthz?token=${BAD_TOKEN}`], ['GET', `/missing?token=${BAD_TOKEN}`]]) {
    expect((await rawHttp(port, `${method} ${path} HTTP/1.1\r\nHost: x\r\n${secretHeaders}Connection: close\r\n\r\n`)).statusLine).toMatch(
      /^HTTP\/1\.1 4\d\d /,
    );
  }
  // A connected client that breaks the protocol in every way, with the token in its frames and headers.
  const c = await clients.connect(`${ws}?token=${GOOD_TOKEN}`, { origin: ORIGIN, headers: { Cookie: `session=${BAD_TOKEN}` } });
  c.sendRaw(`{"type":"publish","data":"${BAD_TOKEN}"`);
  c.sendRaw(JSON.stringify({ type: BAD_TOKEN, id: 'u' }));
  c.sendRaw(JSON.stringify({ type: 'join', room: `${BAD_TOKEN}!`, id: 'r' }));
  c.sendRaw(Buffer.from(GOOD_TOKEN), { binary: true });
  await c.waitFor((f) => f.type === 'error' && f.code === 'bad_frame');
  // Refreshes refused (a bad and an expired token) and accepted (the good one): their answers and logs name no token.
  expect(await c.request({ type: 'refresh', token: BAD_TOKEN, id: 'rb' })).toMatchObject({ code: 'unauthorized' });
  expect(await c.request({ type: 'refresh', token: EXPIRED_TOKEN, id: 're' })).toMatchObject({ code: 'unauthorized' });
  expect(await c.request({ type: 'refresh', token: GOOD_TOKEN, id: 'rg' })).toMatchObject({ type: 'ack' });
  c.sendRaw(JSON.stringify({ type: 'publish', data: BAD_TOKEN.repeat(100) }));
  expect((await c.waitClose()).code).toBe(1009);
}

describe('no secret in any log line', () => {
  it.each(LEVELS)('LOG_LEVEL=%s: not the token, the token secret nor the Redis password', async (level) => {
    const relay = await relays.start(await relayEnv(level, REDIS_PASSWORD));
    await relay.waitHealthy();
    await misbehave(relay);
    relay.signal('SIGTERM');
    expect((await relay.waitExit()).code).toBe(0);
    expect(leaks(relay.logs)).toEqual([]);
    // The search means something only if the paths above did log: at debug and below, every refusal is a line.
    if (level === 'trace' || level === 'debug') {
      expect(relay.logs.filter((l) => l.includes('"upgrade refused"')).length).toBeGreaterThanOrEqual(8);
      expect(relay.logs.filter((l) => l.includes('"client error"')).length).toBeGreaterThanOrEqual(3);
    }
    if (level === 'info') expect(relay.logs.some((l) => l.includes('"redis backplane ready"'))).toBe(true);
    if (level === 'silent') expect(relay.logs).toEqual([]);
  });

  it('a wrong Redis password shows in no log line (trace), nor does an unusable REDIS_URL in the start-up error', async () => {
    const relay = await relays.start(await relayEnv('trace', WRONG_PASSWORD));
    await relay.waitLog((l) => typeof l.error === 'string' && /WRONGPASS|invalid password/i.test(l.error));
    relay.signal('SIGTERM');
    await relay.waitExit();
    expect(leaks(relay.logs)).toEqual([]);
    const broken = await relays.start({ ...(await relayEnv('trace', REDIS_PASSWORD)), PORT: '0', REDIS_URL: `redis://:${WRONG_PASSWORD}@[::1` }).then(
      () => 'started',
      (err: Error) => err.message,
    );
    expect(broken).toMatch(/REDIS_URL=".*\*\*\*.*": expected a redis:\/\/ or rediss:\/\/ URL/);
    expect(leaks([broken])).toEqual([]);
  });
});
