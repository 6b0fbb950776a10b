/**
 * `ops verify` against real relays: two instances on one Redis deliver everything; two instances whose channel
 * prefixes differ (cross-instance delivery broken) lose messages, and verify says so with exit 1.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLedger, writeLedger } from '../../app/ledger';
import { verifyDelivery, type VerifyReport } from '../../app/verify';
import { useRedis, useRelays } from '../helpers/fixtures';
import { TestLoadBalancer } from '../helpers/test-load-balancer';
import type { Project } from '../helpers/project';
import type { RelayProcess } from '../helpers/relay-process';
import { fixtureRelease, makeWorkspace, runOps } from './ledger-fixtures';

jest.setTimeout(120_000);

const redis = useRedis();
const relays = useRelays();
let ws: Project;
beforeEach(() => {
  ws = makeWorkspace();
});
afterEach(() => ws.cleanup());

describe('ops verify', () => {
  it('passes against two relays on one Redis, prints the table, writes the JSON and records the result in the ledger', async () => {
    const server = await redis.start();
    const [a, b] = await relays.pair({ REDIS_URL: server.url });
    const release = fixtureRelease(ws.artifactsDir, 1);
    writeLedger(ws.ledgerDir, { version: 2, environment: 'staging', active: release.label, releases: [release], history: [] });
    const json = join(ws.root, 'verify.json');

    const r = await runOps(ws, 'verify', 'staging', '--urls', `${a.wsUrl},${b.wsUrl}`, '--duration', '2s', '--clients', '4', '--rate', '50', '--json', json);

    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^CLIENT +INSTANCES +RECEIVED +GAPS +DUPLICATES +REORDERED +RECONNECTS +RECOVERED\n/);
    expect(r.out).toMatch(/ over 2 instances; 0 gaps, 0 duplicates, 0 reordered, 0 seq anomalies; /);
    expect(r.out).toContain('PASSED: every acknowledged message reached every client exactly once\n');
    const report = JSON.parse(readFileSync(json, 'utf8')) as VerifyReport;
    expect(report.instances).toHaveLength(2);
    expect(report.acknowledged).toBeGreaterThan(50);
    expect(report.clients.every((c) => c.received === report.acknowledged)).toBe(true);
    expect(report.p99Ms).not.toBeNull();
    expect(readLedger(ws.ledgerDir, 'staging')?.verification).toMatchObject({ label: release.label, passed: true, gaps: 0, duplicates: 0, clients: 4, instances: 2 });
  });

  it('reports the gaps and exits 1 when the instances do not share a channel prefix', async () => {
    const server = await redis.start();
    const a = await relays.start({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'blue' });
    const b = await relays.start({ REDIS_URL: server.url, RELAY_CHANNEL_PREFIX: 'green' });
    await Promise.all([a.waitHealthy(20_000), b.waitHealthy(20_000)]);
    const json = join(ws.root, 'verify.json');

    const r = await runOps(ws, 'verify', '--urls', `${a.wsUrl},${b.wsUrl}`, '--duration', '1s', '--clients', '4', '--rate', '40', '--json', json);

    expect(r.code).toBe(1);
    const report = JSON.parse(readFileSync(json, 'utf8')) as VerifyReport;
    // Each client misses what the two publishers on the other instance sent: half of everything.
    expect(report.gaps).toBe(report.clients.length * (report.acknowledged / 2));
    expect(report.passed).toBe(false);
    expect(r.out).toContain('FAILED: messages were lost or duplicated\n');
  });

  it('refuses bad arguments with what is allowed', async () => {
    for (const [args, message] of [
      [['verify'], 'verify needs an environment (`verify <env>`) or `--urls ws://host:port/ws[,…]`\n'],
      [['verify', '--urls', 'http://x'], '--urls: "http://x" is not a ws:// or wss:// URL (e.g. ws://127.0.0.1:8081/ws)\n'],
      [['verify', '--urls', 'ws://127.0.0.1:1/ws', '--duration', 'soon'], '--duration: expected a time like 60s, 2m or 500ms, got "soon"\n'],
      [['verify', '--urls', 'ws://127.0.0.1:1/ws', '--instances', '0'], '--instances: expected an integer from 1 to 1000, got "0"\n'],
      [['verify', '--urls', 'ws://127.0.0.1:1/ws', '--discovery-timeout', '-1s'], '--discovery-timeout: expected a time like 60s, 2m or 500ms, got "-1s"\n'],
      [['verify', 'qa', '--urls', 'ws://127.0.0.1:1/ws'], `unknown environment "qa": ${ws.configFile} defines dev, staging, prod\n`],
    ] as const) {
      expect(await runOps(ws, ...args)).toEqual({ code: 1, out: '', err: message });
    }
  });
});

describe('verify behind a load balancer', () => {
  /** Three relays on one Redis behind one round-robin address, as an ALB presents an environment. */
  async function threeBehindOneAddress(): Promise<{ url: string; ids: string[] }> {
    const server = await redis.start();
    const lb = new TestLoadBalancer({ healthPath: '/healthz/lb', intervalMs: 100, healthyThreshold: 1, unhealthyThreshold: 2, deregistrationDelayMs: 1000 });
    const port = await lb.listen();
    lbs.push(lb);
    const started = await Promise.all([0, 1, 2].map(() => relays.start({ REDIS_URL: server.url })));
    await Promise.all(started.map((r) => r.waitHealthy(20_000)));
    started.forEach((r, i) => lb.register(`r${i}`, r.port));
    await Promise.all(started.map((_, i) => lb.waitHealthy(`r${i}`, 20_000)));
    return { url: `ws://127.0.0.1:${port}/ws`, ids: started.map((_, i) => `r${i}`) };
  }
  const lbs: TestLoadBalancer[] = [];
  afterEach(async () => {
    await Promise.all(lbs.splice(0).map((lb) => lb.close()));
  });

  it('keeps connecting through one URL until it has seen every instance, and puts clients on each of them', async () => {
    const { url } = await threeBehindOneAddress();
    const json = join(ws.root, 'verify.json');

    const r = await runOps(ws, 'verify', '--urls', url, '--duration', '1s', '--clients', '6', '--rate', '30', '--json', json);

    // The whole result on a failure: the report says what went wrong.
    expect({ code: r.code, out: r.out.includes('\nPASSED: ') ? 'PASSED' : r.out, err: r.err }).toEqual({ code: 0, out: 'PASSED', err: '' });
    const report = JSON.parse(readFileSync(json, 'utf8')) as VerifyReport;
    expect(report.discovery).toMatchObject({ complete: true, expected: null });
    expect(report.discovery.instances).toHaveLength(3);
    // Every discovered instance carries two of the six clients.
    for (const id of report.discovery.instances) {
      expect(report.clients.filter((c) => c.instanceIds[0] === id)).toHaveLength(2);
    }
    expect(report.instances).toEqual(report.discovery.instances);
    expect(r.out).toMatch(/^instances: saw 3 instances in \d+ connections; the last \d+ found no new one\n/m);
  });

  it('with --instances more than it can reach, says how many it saw and fails', async () => {
    const { url } = await threeBehindOneAddress();

    const r = await runOps(ws, 'verify', '--urls', url, '--duration', '1s', '--clients', '3', '--rate', '20', '--instances', '4', '--discovery-timeout', '2s');

    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^instances: saw 3 instances in \d+ connections; expected 4 \(--instances\): the missing ones were not reached within 2 s\n/m);
    expect(r.out).toMatch(/FAILED: not every expected instance was reached/);
  });
});

describe('verify during a rolling restart', () => {
  /** Drains and restarts each relay in turn on its own port, as a deploy replaces one instance at a time. */
  async function rollingRestart(pair: RelayProcess[], env: Record<string, string>): Promise<void> {
    for (let i = 0; i < pair.length; i++) {
      const old = pair[i];
      old.signal('SIGTERM');
      await old.waitExit(20_000);
      pair[i] = await relays.start({ ...env, PORT: String(old.port), RELAY_METRICS_PORT: String(old.port + 1000) });
      await pair[i].waitHealthy(20_000);
    }
  }

  // Without recovery a message is lost only if it is published while a client reconnects (a few ms on loopback), so
  // that run publishes fast enough for every reconnect window to hold some.
  it.each([
    ['with recovery on, nothing is lost', {}, 50, true],
    ['with RELAY_HISTORY_SIZE=0, the gaps are reported', { RELAY_HISTORY_SIZE: '0' }, 500, false],
  ] as const)('%s', async (_name, extra, rate, passes) => {
    const server = await redis.start();
    const env = { REDIS_URL: server.url, RELAY_DRAIN_WINDOW_MS: '200', ...extra };
    const pair: RelayProcess[] = await relays.pair(env);
    const report = await verifyDelivery({
      urls: pair.map((r) => r.wsUrl),
      durationMs: 1000,
      clients: 4,
      rate,
      during: () => rollingRestart(pair, env),
    });
    expect(report.reconnects).toBeGreaterThanOrEqual(4);
    if (passes) {
      expect({ gaps: report.gaps, duplicates: report.duplicates, passed: report.passed }).toEqual({ gaps: 0, duplicates: 0, passed: true });
      expect(report.recoveredRate).toBe(1);
    } else {
      expect(report.gaps).toBeGreaterThan(0);
      expect(report.passed).toBe(false);
    }
  });
});
