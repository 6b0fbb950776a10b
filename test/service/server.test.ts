import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signHs256Token } from '../../service/auth';
import { loadServiceConfig } from '../../service/config';
import { createRelay, type Relay } from '../../service/server';
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

async function startRelay(env: Record<string, string> = {}): Promise<{ relay: Relay; http: string; ws: string }> {
  const config = loadServiceConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', RELAY_INSTANCE_ID: 'srv-test', ...env });
  const relay = createRelay(config, { publicDir });
  relays.push(relay);
  const { port } = await relay.start();
  return { relay, http: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}/ws` };
}

async function connect(url: string, opts?: Parameters<typeof TestClient.connect>[1]): Promise<TestClient> {
  const c = await TestClient.connect(url, opts);
  clients.push(c);
  return c;
}

function get(url: string, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, timeout: 10_000 }, (res) => {
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

  it('exposes Prometheus metrics that count messages, deliveries and errors', async () => {
    const { http, ws } = await startRelay();
    const [a, b] = await Promise.all([connect(ws), connect(ws)]);
    await a.request({ type: 'join', room: 'r', id: '1' });
    await b.request({ type: 'join', room: 'r', id: '1' });
    await a.request({ type: 'publish', room: 'r', data: 'x', id: '2' });
    await b.waitForMessages(1);
    b.sendRaw('{');
    await b.waitFor((f) => f.type === 'error');
    const res = await get(`${http}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('relay_connections 2');
    expect(res.body).toContain('relay_rooms 1');
    expect(res.body).toContain('relay_messages_in_total 1');
    expect(res.body).toContain('relay_messages_out_total 2');
    expect(res.body).toContain('relay_backplane_publish_errors_total 0');
    expect(res.body).toContain('relay_slow_consumers_total 0');
    expect(res.body).toContain('relay_errors_total{code="bad_json"} 1');
    expect(res.body).toContain('process_cpu_user_seconds_total');
  });

  it('serves files from the public folder with their content types and nothing else', async () => {
    const { http } = await startRelay();
    const index = await get(`${http}/`);
    expect(index).toMatchObject({ status: 200, body: '<!doctype html><title>relay</title>' });
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    const js = await get(`${http}/client.js`);
    expect(js).toMatchObject({ status: 200, body: 'export const x = 1;' });
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    for (const path of ['/missing.js', '/..%2Fpackage.json', '/%2E%2E/package.json', '/sub/client.js']) {
      const res = await get(`${http}${path}`);
      expect(res.status).toBe(404);
    }
    expect(JSON.parse((await get(`${http}/missing.js`)).body)).toEqual({ error: 'not_found', message: 'no such path: /missing.js' });
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
