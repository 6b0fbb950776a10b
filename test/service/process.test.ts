import { join } from 'node:path';
import { expect } from '@jest/globals';
import { freePort } from '../../app/free-port';
import { startProcess } from '../../app/processes';
import { TEST_BUILD_DIR } from '../global-setup';
import { useClients, useRelays } from '../helpers/fixtures';
import { rawUpgrade } from '../helpers/ws-client';

const relays = useRelays();
const clients = useClients();

/** Runs the bundled relay to completion with the given environment (for start-up failures); resolves with its output. */
async function runToExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const proc = startProcess('relay', process.execPath, [join(TEST_BUILD_DIR, 'server.js')], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env },
    keepLines: Infinity,
  });
  const exit = await proc.waitExit(15_000);
  if (exit === null) {
    await proc.stop();
    throw new Error(`relay did not exit within 15 s; output:\n${proc.lines.join('\n')}`);
  }
  return { code: exit.code, output: proc.lines.join('\n') };
}

describe('bundled relay process', () => {
  it('boots with no Redis on the in-memory backplane, like npm start', async () => {
    const relay = await relays.start({ REDIS_URL: '' });
    // The readiness record process harnesses match on (app/local-servers.ts): its fields, not its message, are the contract.
    const listening = await relay.waitLog((l) => l.event === 'listening');
    expect(listening).toMatchObject({ port: relay.port, backplane: 'memory', instanceId: expect.any(String) });
    const health = await relay.health();
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', backplane: { kind: 'memory', state: 'ready' } });
    const c = await clients.connect(relay);
    expect(c.welcome).toEqual({ type: 'welcome', connectionId: expect.any(String), instanceId: listening.instanceId, protocol: 1 });
    await c.request({ type: 'join', room: 'lobby', id: '1' });
    await c.request({ type: 'publish', room: 'lobby', data: 'hello', id: '2' });
    expect(await c.waitForMessages(1)).toEqual([
      { type: 'message', room: 'lobby', data: 'hello', from: c.welcome.connectionId, seq: '1', epoch: expect.any(String) },
    ]);
  });

  it('listens and reports 503 when Redis is unreachable at boot, refusing publishes with backplane_unavailable', async () => {
    // A port just probed free: nothing listens there.
    const relay = await relays.start({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    const health = await relay.health();
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'degraded', backplane: { kind: 'redis' } });
    const c = await clients.connect(relay);
    const err = await c.request({ type: 'publish', data: 'x', id: 'p' });
    expect(err).toMatchObject({ type: 'error', id: 'p', code: 'backplane_unavailable' });
    expect(err.message).toMatch(/^the redis backplane is (connecting|down); the message was not delivered, retry shortly$/);
    expect(relay.proc.exitCode).toBeNull();
  });

  it('exits 1 listing every configuration problem', async () => {
    const { code, output } = await runToExit({ PORT: 'x', REDIS_URL: 'http://nope', RELAY_MAX_ROOMS: '0' });
    expect(code).toBe(1);
    expect(output).toContain('invalid relay configuration (3 problems); fix these environment variables:');
    expect(output).toContain('PORT="x": expected an integer from 0 to 65535 (default 8080)');
    expect(output).toContain('REDIS_URL="http://nope": expected a redis:// or rediss:// URL');
    expect(output).toContain('RELAY_MAX_ROOMS="0": expected an integer from 1 to 100000 (default 100)');
  });

  it('drains on SIGTERM: 503 while draining, clients closed with 1001, exit 0 before the deadline', async () => {
    const relay = await relays.start({ RELAY_DRAIN_WINDOW_MS: '3000', RELAY_SHUTDOWN_TIMEOUT_MS: '12000' });
    const [a, b, c] = await Promise.all([clients.connect(relay), clients.connect(relay), clients.connect(relay)]);
    const started = Date.now();
    relay.signal('SIGTERM');
    // Batches are spread over the window: the first client goes at once, the last about 2 s later.
    expect(await a.waitClose(10_000)).toEqual({ code: 1001, reason: 'server shutting down' });
    const health = await relay.health();
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('draining');
    const refused = await rawUpgrade(relay.wsUrl);
    expect(refused.status).toBe(503);
    expect(await b.waitClose(10_000)).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await c.waitClose(10_000)).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await relay.waitExit(15_000)).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(12_000);
    await relay.waitLog((l) => l.msg === 'shutdown complete');
  });

  it('exits at once on a second signal', async () => {
    const relay = await relays.start({ RELAY_DRAIN_WINDOW_MS: '30000', RELAY_SHUTDOWN_TIMEOUT_MS: '60000' });
    const [a] = await Promise.all([clients.connect(relay), clients.connect(relay)]);
    relay.signal('SIGTERM');
    await a.waitClose(10_000);
    await relay.waitLog((l) => l.msg === 'draining');
    const second = Date.now();
    relay.signal('SIGTERM');
    expect(await relay.waitExit(5_000)).toEqual({ code: 1, signal: null });
    expect(Date.now() - second).toBeLessThan(5_000);
    await relay.waitLog((l) => l.msg === 'second signal: exiting at once');
  });
});
