/** The relay's publish latency (Prometheus and EMF) and the bounded EMF file. */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadServiceConfig } from '../../service/config';
import { EmfReporter, LatencyWindow, emfDocument, type EmfSample } from '../../service/emf-metrics';
import { createRelay, type Relay } from '../../service/server';
import { waitUntil } from '../helpers/redis-server';
import { TestClient } from '../helpers/ws-client';

const relays: Relay[] = [];
const clients: TestClient[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-emf-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(relays.splice(0).map((r) => r.close()));
});

const sample = (over: Partial<EmfSample> = {}): EmfSample => ({
  connections: 1,
  deliveriesTotal: 0,
  backplaneReady: true,
  backplaneDownMs: 0,
  slowConsumersTotal: 0,
  ...over,
});

function lines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function body(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    }).on('error', reject);
  });
}

describe('publish latency', () => {
  it('summarises an interval as p50, p99 and max from fixed buckets, then starts the next interval empty', () => {
    const window = new LatencyWindow();
    for (let ms = 1; ms <= 100; ms++) window.record(ms);
    const s = window.take();
    expect(s.count).toBe(100);
    expect(s.max).toBe(100);
    // A bucket's upper bound is at most 25% above the values in it, and never above the maximum.
    expect(s.p50).toBeGreaterThanOrEqual(50);
    expect(s.p50).toBeLessThanOrEqual(62.5);
    expect(s.p99).toBeGreaterThanOrEqual(99);
    expect(s.p99).toBeLessThanOrEqual(100);
    expect(window.take()).toEqual({ count: 0, p50: 0, p99: 0, max: 0 });
    window.record(0.01);
    window.record(120_000);
    // Below the first bucket (0.05 ms) the bucket's bound is reported; past the last one, the exact maximum.
    expect(window.take()).toEqual({ count: 2, p50: 0.05, max: 120_000, p99: 120_000 });
  });

  it('is declared in milliseconds in the EMF document, and left out of an interval without publishes', () => {
    const doc = emfDocument('relay-prod', 60_000, sample({ publishLatency: { count: 4, p50: 1.5, p99: 7, max: 8.25 } }), undefined);
    expect(doc).toMatchObject({ PublishLatencyP50: 1.5, PublishLatencyP99: 7, PublishLatencyMax: 8.25, Publishes: 4 });
    const metrics = (doc._aws as { CloudWatchMetrics: { Metrics: { Name: string; Unit: string }[] }[] }).CloudWatchMetrics[0]?.Metrics;
    expect(metrics).toEqual(
      expect.arrayContaining([
        { Name: 'PublishLatencyP50', Unit: 'Milliseconds' },
        { Name: 'PublishLatencyP99', Unit: 'Milliseconds' },
        { Name: 'PublishLatencyMax', Unit: 'Milliseconds' },
        { Name: 'Publishes', Unit: 'Count' },
      ]),
    );
    for (const quiet of [sample(), sample({ publishLatency: { count: 0, p50: 0, p99: 0, max: 0 } })]) {
      const d = emfDocument('relay-prod', 60_000, quiet, undefined);
      expect(JSON.stringify(d)).not.toContain('PublishLatency');
      expect(d).not.toHaveProperty('Publishes');
    }
  });

  it('a relay measures each acknowledged publish on /metrics and in its EMF file', async () => {
    const file = join(dir, 'latency.log');
    const config = loadServiceConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', RELAY_EMF_FILE: file, RELAY_EMF_INTERVAL_MS: '1000', RELAY_CHANNEL_PREFIX: 'relay-test' });
    const relay = createRelay(config);
    relays.push(relay);
    const { port, metricsPort } = await relay.start();
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
    clients.push(c);
    await c.request({ type: 'join', room: 'r', id: 'j' });
    for (let i = 0; i < 3; i++) expect(await c.request({ type: 'publish', room: 'r', data: i, id: `p${i}` })).toEqual({ type: 'ack', id: `p${i}` });
    const prom = await body(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(prom).toContain('relay_publish_latency_seconds_count 3');
    expect(prom).toMatch(/relay_publish_latency_seconds_bucket\{le="2\.5"\} 3/);
    // The three publishes may straddle two intervals: together the lines count exactly three.
    const measured = (): Record<string, unknown>[] => lines(file).filter((l) => l.Publishes !== undefined);
    await waitUntil(() => measured().reduce((n, l) => n + (l.Publishes as number), 0) === 3, 15_000, 'EMF lines counting the three publishes');
    for (const line of measured()) {
      expect(line).toMatchObject({ Environment: 'relay-test' });
      for (const k of ['PublishLatencyP50', 'PublishLatencyP99', 'PublishLatencyMax']) {
        expect(typeof line[k]).toBe('number');
        expect(line[k] as number).toBeGreaterThan(0);
        expect(line[k] as number).toBeLessThanOrEqual(line.PublishLatencyMax as number);
      }
    }
    // A later interval saw no publish: no latency values, so averages are not dragged towards 0.
    const all = lines(file);
    const at = all.length - 1 - [...all].reverse().findIndex((l) => l.Publishes !== undefined);
    await waitUntil(() => lines(file).length > at + 1, 15_000, 'the next EMF line');
    expect(lines(file)[at + 1]).toMatchObject({ Environment: 'relay-test', Connections: 1 });
    expect(lines(file)[at + 1]).not.toHaveProperty('PublishLatencyP99');
  });
});

describe('bounded EMF file', () => {
  it('renames a full file to <file>.1, replacing the older one, so the two stay under about twice the cap', async () => {
    const file = join(dir, 'rotate.log');
    const logger = pino({ level: 'silent' });
    let at = 0;
    const reporter = new EmfReporter({ file, intervalMs: 60_000, environment: 'relay-test', logger, maxBytes: 2_000, now: () => (at += 60_000), sample: () => Promise.resolve(sample()) });
    const lineBytes = Buffer.byteLength(`${JSON.stringify(emfDocument('relay-test', 60_000, sample(), undefined))}\n`);
    for (let i = 0; i < 40; i++) {
      await reporter.report();
      expect(statSync(file).size).toBeLessThan(2_000 + lineBytes * 2);
    }
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(existsSync(`${file}.2`)).toBe(false);
    expect(statSync(`${file}.1`).size).toBeGreaterThanOrEqual(2_000);
    // Nothing is lost between the two files: the live file continues where the old one stops.
    const old = lines(`${file}.1`).map((l) => (l._aws as { Timestamp: number }).Timestamp);
    const live = lines(file).map((l) => (l._aws as { Timestamp: number }).Timestamp);
    expect(live.at(-1)).toBe(40 * 60_000);
    expect([...old, ...live]).toEqual(Array.from({ length: old.length + live.length }, (_, i) => (40 - old.length - live.length + 1 + i) * 60_000));
  });

  it('keeps writing when the old file cannot be replaced, and says so in the log', async () => {
    const file = join(dir, 'blocked.log');
    // A directory where the rotated file would go: the rename fails.
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(`${file}.1`);
    writeFileSync(`${file}.1/keep`, 'x');
    writeFileSync(file, 'x'.repeat(3_000));
    const records: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => records.push(l) });
    const reporter = new EmfReporter({ file, intervalMs: 60_000, environment: 'e', logger, maxBytes: 2_000, sample: () => Promise.resolve(sample()) });
    await reporter.report();
    expect(records.join('')).toContain('could not rotate the CloudWatch metrics file');
    expect(readFileSync(file, 'utf8')).toContain('"Environment":"e"');
  });
});
