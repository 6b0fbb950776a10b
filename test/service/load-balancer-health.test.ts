/** The load balancer's view of a relay: the backplane grace period, the drain on deregistration, the EMF metrics file. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadServiceConfig } from '../../service/config';
import { EMF_NAMESPACE, EmfReporter, emfDocument, type EmfSample } from '../../service/emf-metrics';
import { BackplaneOutage, DeregistrationWatch, LB_HEALTH_PATH } from '../../service/load-balancer-health';
import { createRelay, type Relay } from '../../service/server';
import { waitUntil } from '../helpers/redis-server';
import { TestClient } from '../helpers/ws-client';

const relays: Relay[] = [];
const clients: TestClient[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-lb-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.close()));
});

async function startRelay(env: Record<string, string> = {}): Promise<{ relay: Relay; http: string; ws: string }> {
  const config = loadServiceConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', RELAY_DRAIN_WINDOW_MS: '200', ...env });
  const relay = createRelay(config);
  relays.push(relay);
  const { port } = await relay.start();
  return { relay, http: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}/ws` };
}

function get(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

describe('BackplaneOutage', () => {
  it('is within grace for a backplane that was ready, and past it once the outage lasts graceMs', () => {
    let now = 1_000;
    const outage = new BackplaneOutage(60_000, () => now);
    outage.observe('ready');
    expect(outage.exceedsGrace()).toBe(false);
    now += 5_000;
    outage.observe('down');
    now += 59_999;
    expect(outage.downForMs()).toBe(59_999);
    expect(outage.exceedsGrace()).toBe(false);
    outage.observe('down');
    now += 1;
    expect(outage.exceedsGrace()).toBe(true);
    outage.observe('ready');
    expect(outage.downForMs()).toBe(0);
    expect(outage.exceedsGrace()).toBe(false);
  });

  it('is past grace at once for a backplane that never came up', () => {
    const outage = new BackplaneOutage(60_000, () => 0);
    outage.observe('connecting');
    expect(outage.exceedsGrace()).toBe(true);
  });
});

describe('DeregistrationWatch', () => {
  it('does nothing before the first check, fires once after the silence, and resumes when checks return', async () => {
    const events: string[] = [];
    const watch = new DeregistrationWatch({ silenceMs: 50, onSilence: () => events.push('silence'), onResume: () => events.push('resume') });
    try {
      await new Promise((r) => setTimeout(r, 120));
      expect(events).toEqual([]);
      watch.seen();
      await waitUntil(() => events.length === 1, 5_000, 'the silence to be noticed');
      expect(watch.silenced).toBe(true);
      watch.seen();
      expect(events).toEqual(['silence', 'resume']);
      expect(watch.silenced).toBe(false);
    } finally {
      watch.stop();
    }
  });

  it('is off with silenceMs 0', async () => {
    const events: string[] = [];
    const watch = new DeregistrationWatch({ silenceMs: 0, onSilence: () => events.push('silence'), onResume: () => events.push('resume') });
    watch.seen();
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual([]);
    watch.stop();
  });
});

describe('the load balancer health check', () => {
  it('stays 200 while the backplane is down within the grace period; /healthz is strict', async () => {
    const { relay, http } = await startRelay({ RELAY_BACKPLANE_GRACE_MS: '600000' });
    expect((await get(`${http}${LB_HEALTH_PATH}`)).status).toBe(200);
    await relay.backplane.close();
    const lb = await get(`${http}${LB_HEALTH_PATH}`);
    expect(lb).toEqual({ status: 200, body: expect.objectContaining({ status: 'degraded', backplane: { kind: 'memory', state: 'closed' } }) as unknown });
    expect((await get(`${http}/healthz`)).status).toBe(503);
  });

  it('answers 503 once the backplane has been down longer than the grace period', async () => {
    const { relay, http } = await startRelay({ RELAY_BACKPLANE_GRACE_MS: '100' });
    await relay.backplane.close();
    expect((await get(`${http}${LB_HEALTH_PATH}`)).status).toBe(200);
    await waitUntil(async () => (await get(`${http}${LB_HEALTH_PATH}`)).status === 503, 10_000, 'the check to turn 503 after the grace');
  });

  it('answers 503 while draining', async () => {
    const { relay, http } = await startRelay();
    await relay.drain();
    expect(await get(`${http}${LB_HEALTH_PATH}`)).toEqual({ status: 503, body: expect.objectContaining({ status: 'draining' }) as unknown });
  });
});

describe('drain on deregistration', () => {
  it('closes every client with 1001 once the checks stop, and accepts clients again when they return', async () => {
    const { relay, http, ws } = await startRelay({ RELAY_DEREGISTRATION_SILENCE_MS: '300' });
    const a = await TestClient.connect(ws);
    clients.push(a);
    // A relay nobody checks never drains on its own.
    await new Promise((r) => setTimeout(r, 600));
    expect(relay.isDraining()).toBe(false);

    expect((await get(`${http}${LB_HEALTH_PATH}`)).status).toBe(200);
    expect(await a.waitClose(10_000)).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(relay.isDraining()).toBe(true);
    expect((await get(`${http}/healthz`)).body).toMatchObject({ status: 'draining' });

    // Registered again: the next check finds the relay accepting.
    expect((await get(`${http}${LB_HEALTH_PATH}`)).status).toBe(200);
    expect(relay.isDraining()).toBe(false);
    const b = await TestClient.connect(ws);
    clients.push(b);
    expect(b.welcome.connectionId).toEqual(expect.any(String));
  });

  it('never undoes a drain a signal started', async () => {
    const { relay, http } = await startRelay({ RELAY_DEREGISTRATION_SILENCE_MS: '300' });
    await get(`${http}${LB_HEALTH_PATH}`);
    await relay.drain();
    const h = await get(`${http}${LB_HEALTH_PATH}`);
    expect(h.status).toBe(503);
    expect(relay.isDraining()).toBe(true);
  });
});

describe('CloudWatch embedded metric format', () => {
  const sample = (over: Partial<EmfSample> = {}): EmfSample => ({
    connections: 10,
    deliveriesTotal: 1_000,
    backplaneReady: true,
    backplaneDownMs: 0,
    slowConsumersTotal: 2,
    ...over,
  });

  it('turns counters into rates and names every metric under the namespace and the environment dimension', () => {
    const first = emfDocument('relay-prod', 10_000, sample(), undefined);
    expect(first).toMatchObject({ Environment: 'relay-prod', Connections: 10, DeliveriesPerSecond: 0, BackplaneUp: 1, SlowConsumerCutoffs: 0 });
    const next = emfDocument('relay-prod', 70_000, sample({ deliveriesTotal: 7_000, slowConsumersTotal: 5, backplaneReady: false, backplaneDownMs: 12_400 }), {
      at: 10_000,
      sample: sample(),
    });
    expect(next).toEqual({
      _aws: {
        Timestamp: 70_000,
        CloudWatchMetrics: [
          {
            Namespace: EMF_NAMESPACE,
            Dimensions: [['Environment']],
            Metrics: [
              { Name: 'Connections', Unit: 'Count' },
              { Name: 'DeliveriesPerSecond', Unit: 'Count/Second' },
              { Name: 'BackplaneUp', Unit: 'Count' },
              { Name: 'BackplaneDownSeconds', Unit: 'Seconds' },
              { Name: 'SlowConsumerCutoffs', Unit: 'Count' },
            ],
          },
        ],
      },
      Environment: 'relay-prod',
      Connections: 10,
      DeliveriesPerSecond: 100,
      BackplaneUp: 0,
      BackplaneDownSeconds: 12,
      SlowConsumerCutoffs: 3,
    });
  });

  it('a relay with RELAY_EMF_FILE appends one JSON document per interval with its connection count', async () => {
    const file = join(dir, 'metrics.log');
    const { ws } = await startRelay({ RELAY_EMF_FILE: file, RELAY_EMF_INTERVAL_MS: '1000', RELAY_CHANNEL_PREFIX: 'relay-test' });
    clients.push(await TestClient.connect(ws));
    const lines = (): Record<string, unknown>[] => {
      try {
        return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        return [];
      }
    };
    await waitUntil(() => lines().length >= 2, 15_000, 'two EMF lines');
    expect(lines()[1]).toMatchObject({ Environment: 'relay-test', Connections: 1, BackplaneUp: 1 });
  });

  it('logs a write that fails and keeps going', async () => {
    const records: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => records.push(l) });
    const reporter = new EmfReporter({ file: join(dir, 'missing', 'x.log'), intervalMs: 1000, environment: 'e', logger, sample: () => Promise.resolve(sample()) });
    await reporter.report();
    expect(records.join('')).toContain('could not write the CloudWatch metrics line');
  });
});
