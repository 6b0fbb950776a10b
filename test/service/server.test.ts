import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signHs256Token } from '../../service/auth';
import { DATA_CSP, PAGE_CSP } from '../../service/http/responses';
import { loadServiceConfig } from '../../service/config';
import { createRelay, type Relay } from '../../service/server';
import { rawHttp, UPGRADE_HEADERS } from '../helpers/raw-http';
import { waitUntil } from '../helpers/redis-server';
import { TestClient, rawUpgrade } from '../helpers/ws-client';

const relays: Relay[] = [];
const clients: TestClient[] = [];
let publicDir: string;

beforeAll(() => {
  publicDir = mkdtempSync(join(tmpdir(), 'relay-public-'));
  writeFileSync(join(publicDir, 'index.html'), '<!doctype html><title>relay</title>');
  writeFileSync(join(publicDir, 'client.js'), 'export const x = 1;');
});
afterAll(() => rmSync(publicDir, { recursive: true, force: true }));

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.close()));
});

async function startRelay(env: Record<string, string> = {}): Promise<{ relay: Relay; http: string; ws: string; internal: string }> {
  const config = loadServiceConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', RELAY_INSTANCE_ID: 'srv-test', ...env });
  const relay = createRelay(config, { publicDir });
  relays.push(relay);
  const { port, metricsPort } = await relay.start();
  return { relay, http: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}/ws`, internal: `http://127.0.0.1:${metricsPort}` };
}

async function connect(url: string, opts?: Parameters<typeof TestClient.connect>[1]): Promise<TestClient> {
  const c = await TestClient.connect(url, opts);
  clients.push(c);
  return c;
}

function get(
  url: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A JSON response body, to read one field of it. */
function jsonBody(res: { body: string }): Record<string, unknown> {
  return JSON.parse(res.body) as Record<string, unknown>;
}

describe('HTTP endpoints', () => {
  it('reports health with 200 while the backplane is ready and 503 when it is not', async () => {
    const { relay, http, ws } = await startRelay();
    const c = await connect(ws);
    await c.request({ type: 'join', room: 'r', id: '1' });
    const ok = await get(`${http}/healthz`);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({
      status: 'ok',
      instanceId: 'srv-test',
      connections: 1,
      rooms: 1,
      backplane: { kind: 'memory', state: 'ready' },
    });
    await relay.backplane.close();
    const down = await get(`${http}/healthz`);
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body)).toMatchObject({ status: 'degraded', backplane: { kind: 'memory', state: 'closed' } });
  });

  it('exposes Prometheus metrics on the internal port only, counting messages, deliveries and errors', async () => {
    const { http, ws, internal } = await startRelay();
    const [a, b] = await Promise.all([connect(ws), connect(ws)]);
    await a.request({ type: 'join', room: 'r', id: '1' });
    await b.request({ type: 'join', room: 'r', id: '1' });
    await a.request({ type: 'publish', room: 'r', data: 'x', id: '2' });
    await b.waitForMessages(1);
    b.sendRaw('{');
    await b.waitFor((f) => f.type === 'error');
    expect((await get(`${http}/metrics`)).status).toBe(404);
    const res = await get(`${internal}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('relay_connections 2');
    expect(res.body).toContain('relay_rooms 1');
    expect(res.body).toContain('relay_messages_in_total 1');
    expect(res.body).toContain('relay_messages_out_total 2');
    expect(res.body).toContain('relay_backplane_publish_errors_total 0');
    expect(res.body).toContain('relay_slow_consumers_total 0');
    expect(res.body).toContain('relay_errors_total{code="bad_json"} 1');
    expect(res.body).toContain('process_cpu_user_seconds_total');
    expect((await get(`${internal}/`)).status).toBe(404);
    expect((await get(`${internal}/index.html`)).status).toBe(404);
  });

  it('shows no internal address or error text on the public /healthz; /healthz/detail on the internal port has them', async () => {
    const { relay, http, internal } = await startRelay();
    const detail = await get(`${internal}/healthz/detail`);
    expect(detail.status).toBe(200);
    expect(jsonBody(detail)).toMatchObject({
      status: 'ok',
      instanceId: 'srv-test',
      connections: 0,
      admitted: 0,
      maxConnections: 10000,
      backplane: { kind: 'memory', state: 'ready' },
    });
    await relay.backplane.close();
    const pub = await get(`${http}/healthz`);
    expect(pub.status).toBe(503);
    expect(Object.keys(jsonBody(pub)).sort()).toEqual(['backplane', 'connections', 'instanceId', 'rooms', 'status']);
    expect(Object.keys(jsonBody(pub).backplane as object).sort()).toEqual(['kind', 'state']);
    expect((await get(`${internal}/healthz/detail`)).status).toBe(503);
  });

  it('serves files from the public folder with their content types and nothing else', async () => {
    const { http } = await startRelay();
    const index = await get(`${http}/`);
    expect(index).toMatchObject({ status: 200, body: '<!doctype html><title>relay</title>' });
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    const js = await get(`${http}/client.js`);
    expect(js).toMatchObject({ status: 200, body: 'export const x = 1;' });
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    for (const res of [index, js]) {
      expect(res.headers).toMatchObject({
        'content-security-policy': PAGE_CSP,
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-cache',
      });
      expect(res.headers.etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    }
    // Revalidation: the same ETag gets 304 without a body.
    const again = await get(`${http}/`, 'GET', { 'If-None-Match': String(index.headers.etag) });
    expect(again).toMatchObject({ status: 304, body: '' });
    for (const path of ['/missing.js', '/..%2Fpackage.json', '/%2E%2E/package.json', '/sub/client.js']) {
      const res = await get(`${http}${path}`);
      expect(res.status).toBe(404);
    }
    const missing = await get(`${http}/missing.js`);
    expect(JSON.parse(missing.body)).toEqual({ error: 'not_found', message: 'no such path: /missing.js' });
    // JSON answers are data: a policy that loads nothing, and never cached.
    for (const res of [missing, await get(`${http}/healthz`)]) {
      expect(res.headers).toMatchObject({
        'content-security-policy': DATA_CSP,
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-store',
      });
    }
  });

  it('answers a plain GET /ws with 426 and other methods with 405', async () => {
    const { http } = await startRelay();
    const plain = await get(`${http}/ws`);
    expect(plain.status).toBe(426);
    expect(JSON.parse(plain.body)).toEqual({
      error: 'upgrade_required',
      message: '/ws speaks WebSocket only; connect with a WebSocket client',
    });
    const post = await get(`${http}/healthz`, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(jsonBody(post).message).toBe('POST is not supported; use GET');
  });
});

describe('WebSocket upgrade', () => {
  it('refuses upgrades on other paths with 404', async () => {
    const { http } = await startRelay();
    const res = await rawUpgrade(`${http.replace('http', 'ws')}/socket`);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toEqual({ error: 'not_found', message: 'no WebSocket endpoint at /socket; connect to /ws' });
  });

  it('enforces the origin allowlist with 403', async () => {
    const { ws } = await startRelay({ RELAY_ALLOWED_ORIGINS: 'https://app.example.com,http://localhost:3000' });
    const evil = await rawUpgrade(ws, { Origin: 'https://evil.example.com' });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body)).toEqual({
      error: 'forbidden_origin',
      message: 'origin "https://evil.example.com" is not in RELAY_ALLOWED_ORIGINS',
    });
    const none = await rawUpgrade(ws);
    expect(none.status).toBe(403);
    expect(jsonBody(none).message).toBe('origin (none) is not in RELAY_ALLOWED_ORIGINS');
    const ok = await connect(ws, { origin: 'http://localhost:3000' });
    expect(ok.welcome.type).toBe('welcome');
  });

  it('requires a valid HS256 token when RELAY_TOKEN_SECRET is set (401 otherwise)', async () => {
    const secret = 'server-test-secret-123';
    const { ws } = await startRelay({ RELAY_TOKEN_SECRET: secret });
    const now = Math.floor(Date.now() / 1000);
    const missing = await rawUpgrade(ws);
    expect(missing.status).toBe(401);
    expect(JSON.parse(missing.body)).toEqual({ error: 'unauthorized', message: 'a token is required: connect to /ws?token=<HS256 JWT>' });
    const forged = await rawUpgrade(`${ws}?token=${signHs256Token({ sub: 'u' }, 'wrong-secret-456789')}`);
    expect(forged.status).toBe(401);
    expect(jsonBody(forged).message).toBe('token signature does not match; sign it with RELAY_TOKEN_SECRET using HS256');
    const expired = await rawUpgrade(`${ws}?token=${signHs256Token({ sub: 'u', exp: now - 60 }, secret)}`);
    expect(expired.status).toBe(401);
    expect(jsonBody(expired).message).toMatch(/^token expired at .+; request a new one$/);
    const early = await rawUpgrade(`${ws}?token=${signHs256Token({ sub: 'u', nbf: now + 3600 }, secret)}`);
    expect(early.status).toBe(401);
    expect(jsonBody(early).message).toMatch(/^token not valid before /);
    const ok = await connect(`${ws}?token=${signHs256Token({ sub: 'u', exp: now + 3600 }, secret)}`);
    expect(ok.welcome.type).toBe('welcome');
  });

  it('answers request targets it cannot parse with 400 (404 for odd but valid paths) and closes the socket', async () => {
    const { relay, http } = await startRelay();
    const port = Number(new URL(http).port);
    const cases: Array<[string, string]> = [
      ['//[', '400'],
      ['http://[', '400'],
      ['http://x:99999/ws', '400'],
      ['*', '400'],
      ['ws', '400'],
      // Origin-form: a path that starts with two slashes names no host, so this is just a path other than /ws.
      ['//x:99999/ws', '404'],
      ['/ws/../healthz', '404'],
    ];
    for (const [target, status] of cases) {
      // A 400 closes the connection even when the client would keep it alive; a 404 is an ordinary answer.
      const plain = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${status === '404' ? 'Connection: close\r\n' : ''}\r\n`;
      for (const request of [`GET ${target} HTTP/1.1\r\n${UPGRADE_HEADERS}\r\n`, plain]) {
        const { statusLine, response } = await rawHttp(port, request, 5_000);
        expect([target, statusLine]).toEqual([target, expect.stringMatching(new RegExp(`^HTTP/1\\.1 ${status} `))]);
        expect(response).toMatch(/\r\nConnection: close\r\n/i);
      }
    }
    // Absolute-form targets are read for their path, as HTTP/1.1 requires.
    expect((await rawHttp(port, `GET http://relay.example.com/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).statusLine).toBe(
      'HTTP/1.1 200 OK',
    );
    expect(relay.hub.connectionCount).toBe(0);
    expect(relay.admission.count).toBe(0);
  });

  it('hands the verified claims and the client address to the hub', async () => {
    const secret = 'server-test-secret-123';
    const { relay, ws } = await startRelay({ RELAY_TOKEN_SECRET: secret, RELAY_TOKEN_AUDIENCE: 'relay', RELAY_TOKEN_ISSUER: 'https://auth.example.com' });
    const add = jest.spyOn(relay.hub, 'add');
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const claims = { sub: 'user-7', exp, aud: 'relay', iss: 'https://auth.example.com', room: 'lobby' };
    await connect(`${ws}?token=${signHs256Token(claims, secret)}`);
    expect(add).toHaveBeenCalledTimes(1);
    expect(add.mock.calls[0][1]).toEqual({ remoteAddress: '127.0.0.1', admissionKey: '127.0.0.1', protocol: 1, claims: { sub: 'user-7', exp, payload: claims, access: { listed: false, exact: null, prefixes: [], broadcast: undefined } } });
    const wrongAudience = await rawUpgrade(`${ws}?token=${signHs256Token({ ...claims, aud: 'billing' }, secret)}`);
    expect(wrongAudience).toEqual({
      status: 401,
      body: JSON.stringify({ error: 'unauthorized', message: 'token aud does not name RELAY_TOKEN_AUDIENCE' }),
    });
    const absurd = await rawUpgrade(`${ws}?token=${signHs256Token({ ...claims, exp: -1e300 }, secret)}`);
    expect(absurd.status).toBe(401);
    expect(jsonBody(absurd).message).toBe('token claim exp is out of range: expected seconds from 0 to 253402300799');
    expect(add).toHaveBeenCalledTimes(1);
    expect(await relay.metrics.registry.metrics()).toContain('relay_upgrades_refused_total{reason="unauthorized"} 2');
  });

  it('refuses every other spelling of a valid token and absurd expiry times with a clean 401', async () => {
    const secret = 'server-test-secret-123';
    const { ws, relay } = await startRelay({ RELAY_TOKEN_SECRET: secret });
    const token = signHs256Token({ sub: 'u', exp: Math.floor(Date.now() / 1000) + 3600 }, secret);
    const [h, p, sig] = token.split('.');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const flipped = sig.slice(0, -1) + alphabet[alphabet.indexOf(sig[sig.length - 1]) ^ 1];
    const spellings = [`${token}=`, `${token}==`, `${h}.${p}.${sig.slice(0, 8)}!!!${sig.slice(8)}`, `${h}.${p}.${flipped}`, `${h}.${p}=.${sig}`];
    for (const spelling of spellings) {
      const res = await rawUpgrade(`${ws}?token=${encodeURIComponent(spelling)}`);
      expect([spelling, res.status]).toEqual([spelling, 401]);
      expect(jsonBody(res).message).toMatch(/^token (header|payload|signature) is not canonical base64url/);
    }
    for (const exp of [-1e300, 1e300, -1]) {
      const res = await rawUpgrade(`${ws}?token=${signHs256Token({ sub: 'u', exp }, secret)}`);
      expect([exp, res.status, jsonBody(res).message]).toEqual([exp, 401, 'token claim exp is out of range: expected seconds from 0 to 253402300799']);
    }
    expect((await connect(`${ws}?token=${token}`)).welcome.type).toBe('welcome');
    expect(relay.admission.count).toBe(1);
  });

  it('refuses upgrades beyond RELAY_MAX_CONNECTIONS with 503 and reports "full" on /healthz until back to 90 %', async () => {
    const { http, ws, relay } = await startRelay({ RELAY_MAX_CONNECTIONS: '20' });
    const open: TestClient[] = [];
    for (let i = 0; i < 20; i++) open.push(await connect(ws));
    const refused = await rawUpgrade(ws);
    expect(refused).toEqual({
      status: 503,
      body: JSON.stringify({
        error: 'full',
        message: 'this instance holds its maximum of 20 connections (RELAY_MAX_CONNECTIONS); reconnect to another instance',
      }),
    });
    const full = await get(`${http}/healthz`);
    expect(full.status).toBe(503);
    expect(jsonBody(full)).toMatchObject({ status: 'full', connections: 20 });
    // One below the limit is still "full" (no flapping per connection); at 18 (90 %) it is healthy again.
    await open[0].close();
    await waitUntil(() => relay.admission.count === 19, 5_000, '19 admitted connections');
    expect(jsonBody(await get(`${http}/healthz`)).status).toBe('full');
    await open[1].close();
    await waitUntil(() => relay.admission.count === 18, 5_000, '18 admitted connections');
    const healthy = await get(`${http}/healthz`);
    expect(healthy.status).toBe(200);
    expect(jsonBody(healthy)).toMatchObject({ status: 'ok', connections: 18 });
    expect((await connect(ws)).welcome.type).toBe('welcome');
  });

  it('limits connections per address, believing X-Forwarded-For only from a trusted proxy and only its right-most untrusted hop', async () => {
    const { ws, relay } = await startRelay({ RELAY_MAX_CONNECTIONS_PER_ADDRESS: '2', RELAY_TRUSTED_PROXY: '127.0.0.1/32' });
    const add = jest.spyOn(relay.hub, 'add');
    const from = (xff: string): { headers: Record<string, string> } => ({ headers: { 'X-Forwarded-For': xff } });
    await connect(ws, from('203.0.113.7'));
    // A client can only prepend to what the proxy appends: the left-most entry is its own claim and is ignored.
    await connect(ws, from('198.51.100.1, 203.0.113.7'));
    const third = await rawUpgrade(ws, { 'X-Forwarded-For': '10.9.9.9, 203.0.113.7' });
    expect(third).toEqual({
      status: 429,
      body: JSON.stringify({
        error: 'too_many_connections',
        message: 'your address holds 2 connections to this instance (RELAY_MAX_CONNECTIONS_PER_ADDRESS); close one first',
      }),
    });
    // Trusted hops (here the proxy's own address) are skipped from the right.
    expect((await rawUpgrade(ws, { 'X-Forwarded-For': '203.0.113.7, 127.0.0.1' })).status).toBe(429);
    // Another client behind the same proxy has its own budget; an IPv6 client is counted by its /64.
    await connect(ws, from('203.0.113.8'));
    await connect(ws, from('2001:db8:1:2::a'));
    await connect(ws, from('2001:db8:1:2:ffff::b'));
    expect((await rawUpgrade(ws, { 'X-Forwarded-For': '2001:db8:1:2::c' })).status).toBe(429);
    expect(add.mock.calls.map(([, meta]) => meta?.remoteAddress)).toEqual([
      '203.0.113.7',
      '203.0.113.7',
      '203.0.113.8',
      '2001:db8:1:2::a',
      '2001:db8:1:2:ffff::b',
    ]);
  });

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', async () => {
    const { ws } = await startRelay({ RELAY_MAX_CONNECTIONS_PER_ADDRESS: '2', RELAY_TRUSTED_PROXY: '10.0.0.0/8' });
    await connect(ws, { headers: { 'X-Forwarded-For': '203.0.113.1' } });
    await connect(ws, { headers: { 'X-Forwarded-For': '203.0.113.2' } });
    expect((await rawUpgrade(ws, { 'X-Forwarded-For': '203.0.113.3' })).status).toBe(429);
  });

  it('meters new connections per address: past the burst, 429 with Retry-After, so reconnecting cannot refill frame budgets at will', async () => {
    const { http, ws } = await startRelay({ RELAY_CONNECT_RATE_PER_ADDRESS: '1', RELAY_CONNECT_BURST_PER_ADDRESS: '3' });
    for (let i = 0; i < 3; i++) await (await connect(ws)).close();
    const { response } = await rawHttp(Number(new URL(http).port), `GET /ws HTTP/1.1\r\n${UPGRADE_HEADERS}\r\n`);
    expect(response.split('\r\n')[0]).toBe('HTTP/1.1 429 Too Many Requests');
    expect(response).toMatch(/\r\nRetry-After: 1\r\n/);
    expect(response.slice(response.indexOf('\r\n\r\n') + 4)).toBe(
      JSON.stringify({
        error: 'connect_rate_limited',
        message: 'too many new connections from your address (RELAY_CONNECT_RATE_PER_ADDRESS is 1/s); retry later',
      }),
    );
  });

  it('drains: health turns 503, new upgrades get 503 and clients are closed with 1001', async () => {
    const { relay, http, ws } = await startRelay({ RELAY_DRAIN_WINDOW_MS: '300', RELAY_SHUTDOWN_TIMEOUT_MS: '5000' });
    const [a, b] = await Promise.all([connect(ws), connect(ws)]);
    const drained = relay.drain();
    const health = await get(`${http}/healthz`);
    expect(health.status).toBe(503);
    expect(jsonBody(health).status).toBe('draining');
    const refused = await rawUpgrade(ws);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toEqual({
      error: 'draining',
      message: 'this instance is shutting down; reconnect to another instance',
    });
    expect(await a.waitClose()).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await b.waitClose()).toEqual({ code: 1001, reason: 'server shutting down' });
    await drained;
    expect(relay.hub.connectionCount).toBe(0);
  });
});
