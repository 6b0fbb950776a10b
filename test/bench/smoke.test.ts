import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RELAY_NODE_FLAGS } from '../../app/bundle';
import { REPO_ROOT } from '../../app/paths';
import { runArtifact } from '../../bench/artifact-start';
import { runFanout, type FanoutTargetSpec } from '../../bench/fanout';
import { runIdleFootprint } from '../../bench/idle-footprint';
import { manyRoomsChecks, manyRoomsSection, runManyRooms } from '../../bench/many-rooms';
import { captureEnvironment, sampleLoad } from '../../bench/lib/environment';
import { livePids, stopAllProcesses } from '../../app/processes';
import { startBenchRelay } from '../../bench/lib/servers';
import { checkTargets, renderReport } from '../../bench/report';
import { runSynth } from '../../bench/synth';
import { TEST_BUILD_DIR } from '../global-setup';

// Tiny configurations of every benchmark: the harness works end to end and cleans up; the numbers are not judged.
const relayScript = join(TEST_BUILD_DIR, 'server.js');
const floorScript = join(REPO_ROOT, 'bench', 'floor-relay.js');
const targets: FanoutTargetSpec[] = [
  { name: 'relay', script: relayScript, cwd: TEST_BUILD_DIR, nodeFlags: RELAY_NODE_FLAGS, env: { RELAY_RATE_LIMIT: '1000000', RELAY_RATE_BURST: '1000000', RELAY_MAX_CONNECTIONS_PER_ADDRESS: '0', RELAY_CONNECT_RATE_PER_ADDRESS: '0', RELAY_CHANNEL_PREFIX: 'smoke-relay' } },
  { name: 'floor', script: floorScript, env: { RELAY_CHANNEL_PREFIX: 'smoke-floor' } },
];

/**
 * Direct children of this test process (relays, redis-server, shells): none may outlive a benchmark.
 * esbuild's service process is the bundler's own, kept for reuse by design, and is not counted.
 */
function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[0] is the state: a zombie has exited and only waits to be reaped.
      if (Number(fields[1]) !== process.pid || fields[0] === 'Z') continue;
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'esbuild') continue;
      pids.push(Number(entry));
    } catch {
      // exited while listing
    }
  }
  return pids;
}

function expectNoProcessLeft(): void {
  expect(livePids()).toEqual([]);
  expect(childPids()).toEqual([]);
}

afterAll(async () => {
  await stopAllProcesses();
});

describe('bench smoke runs', () => {
  const log = (): void => undefined;

  it('fan-out: measures both targets at two rates and their half-saturation point', async () => {
    const result = await runFanout({ targets, subscribers: 20, rates: [50, 100], repeats: 1, bisectSteps: 0, warmupMs: 200, measureMs: 500, log });
    expect(result.targets.map((t) => t.name)).toEqual(['relay', 'floor']);
    for (const t of result.targets) {
      expect(t.points.length).toBeGreaterThanOrEqual(1);
      for (const p of [...t.points, ...(t.halfSaturation ? [t.halfSaturation] : [])]) {
        expect(p.deliveriesPerSec).toBeGreaterThan(0);
        expect(p.publishedPerSec).toBeGreaterThan(0);
        expect(Number.isFinite(p.p50Ms) && p.p50Ms > 0).toBe(true);
        expect(p.p99Ms).toBeGreaterThanOrEqual(p.p50Ms);
        expect(p.maxMs).toBeGreaterThanOrEqual(p.p99Ms);
        expect(p.deliveredRatio).toBeGreaterThan(0);
        expect(p.crashes).toBe(0);
        expect(p.serverCpuPer100k).toBeGreaterThanOrEqual(0);
      }
      expect(t.saturationRate === 0 || t.points.some((p) => p.keptUp && p.rate === t.saturationRate)).toBe(true);
    }
    expectNoProcessLeft();
  }, 60_000);

  it('idle footprint: opens, measures and closes the connections on both targets', async () => {
    const result = await runIdleFootprint({ targets, connections: 200, rooms: 20, runs: 2, samples: 2, sampleIntervalMs: 100, settleMs: 100, log });
    expect(result.targets.map((t) => t.name)).toEqual(['relay', 'floor']);
    for (const t of result.targets) {
      expect(t.runs).toHaveLength(2);
      const perRun = t.runs.map((r) => r.bytesPerConnection).sort((a, b) => a - b);
      expect(t.bytesPerConnection).toBeCloseTo((perRun[0] + perRun[1]) / 2);
      expect(t.baselineRssBytes).toBeGreaterThan(10 * 1024 * 1024);
      expect(t.loadedRssBytes).toBeGreaterThan(0);
      expect(Number.isFinite(t.bytesPerConnection)).toBe(true);
      expect(Number.isFinite(t.marginalBytesPerConnection)).toBe(true);
      expect(t.closedWhileIdle).toBe(0);
    }
    const md = renderReport({
      environment: captureEnvironment(), command: 'npm run bench', quick: true, startedAt: new Date(0), durationSec: 1,
      loadBefore: sampleLoad(), loadAfter: sampleLoad(), idle: result,
    });
    const relay = result.targets[0];
    const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
    expect(md).toContain('Each target is measured 2 time(s)');
    expect(md).toContain(`| ${fmt(relay.bytesPerConnection)} B | ${relay.runs.map((r) => fmt(r.bytesPerConnection)).join(', ')} B |`);
    expectNoProcessLeft();
  }, 60_000);

  it('many rooms: measures the relay (protocol 2, recovery on) and the floor, Redis commands per delivery included', async () => {
    const [relay, floor] = targets;
    const manyTargets = [{ ...relay, env: { ...relay.env, RELAY_HISTORY_SIZE: '1000', RELAY_CHANNEL_PREFIX: 'smoke-many' }, wsQuery: 'protocol=2' }, floor];
    const result = await runManyRooms({ targets: manyTargets, rooms: 10, membersPerRoom: 4, rates: [50], bisectSteps: 0, repeats: 1, warmupMs: 200, measureMs: 1000, heartbeatRunMs: 1000, log });
    expect(result.targets.map((t) => t.name)).toEqual(['relay', 'floor']);
    for (const t of result.targets) {
      expect(t.points).toHaveLength(1);
      const p = t.points[0];
      expect(p.deliveriesPerSec).toBeGreaterThan(0);
      expect(p.p99Ms).toBeGreaterThanOrEqual(p.p50Ms);
      expect(p.worstSecondP99Ms).toBeGreaterThan(0);
      expect(p.serverCpuPer100k).toBeGreaterThanOrEqual(0);
      // The floor publishes once per message: 1 command per 4 deliveries, plus the INFO calls and its own traffic.
      expect(p.redisCommandsPerDelivery).toBeGreaterThan(0);
    }
    // The floor: 0.25 per delivery in a full run; a smoke run delivers so little that the INFO calls and the
    // subscriptions of late joiners can weigh as much again, so only a count far from one PUBLISH per delivery fails.
    expect(result.targets[1].points[0].redisCommandsPerDelivery).toBeLessThan(1);
    // The heartbeat run is for relay targets at their saturation rate only.
    expect(result.targets[1].heartbeat).toBeUndefined();
    if (result.targets[0].saturationRate > 0) expect(result.targets[0].heartbeat?.windowMs).toBe(1000);
    const report = manyRoomsSection(result).join('\n');
    expect(report).toContain('### relay');
    expect(manyRoomsChecks(result).map((c) => c.target)).toHaveLength(3);
    expectNoProcessLeft();
  }, 120_000);

  it('synth: times the cdktf.json app and the one-resource app in a copy of the repository', async () => {
    const result = await runSynth({ runs: 1, log });
    expect(result.app.runsMs).toHaveLength(1);
    expect(result.oneResource.runsMs).toHaveLength(1);
    expect(result.app.medianMs).toBeGreaterThan(0);
    expect(result.oneResource.medianMs).toBeGreaterThan(0);
    expect(result.ratio).toBeCloseTo(result.app.medianMs / result.oneResource.medianMs);
    expectNoProcessLeft();
  }, 120_000);

  it('artifact: builds the zip and starts the unzipped relay until /healthz answers 200', async () => {
    const result = await runArtifact({ runs: 1, log });
    expect(result.label).toMatch(/^relay-\d+\.\d+\.\d+-(?:[0-9a-f]{7}-)?[0-9a-f]{12}$/);
    expect(result.zipBytes).toBeGreaterThan(1000);
    expect(result.entries).toEqual(expect.arrayContaining(['server.js', 'package.json', 'Procfile']));
    expect(result.startup.map((s) => s.mode)).toEqual(['redis', 'memory']);
    for (const s of result.startup) expect(Number.isFinite(s.medianMs) && s.medianMs > 0).toBe(true);
    expectNoProcessLeft();
  }, 60_000);
});

describe('bench harness errors and report', () => {
  it('fails with the relay output when a relay exits before it is ready', async () => {
    const err: unknown = await startBenchRelay('bad-relay', { ...targets[0], env: {} }, { RELAY_RATE_LIMIT: 'lots' }).then(
      () => new Error('started'),
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'exited_early' });
    expect((err as Error).message).toMatch(/^bad-relay exited before its "listening" log record \(exit code [1-9]\d*, signal null\); last output:\n[\s\S]*RELAY_RATE_LIMIT="lots"/);
    expectNoProcessLeft();
  });

  it('rejects a fan-out without rates', async () => {
    await expect(runFanout({ targets, rates: [] })).rejects.toThrow('runFanout: `rates` is empty; give at least one publish rate in msg/s');
  });

  it('renders every target with pass, fail or not measured', () => {
    const point = {
      rate: 100, runs: 1, publishedPerSec: 100, deliveriesPerSec: 20_000, deliveredRatio: 1, p50Ms: 2, p99Ms: 9, maxMs: 12,
      serverCpuPer100k: 1.5, relayCores: 0.3, redisCores: 0.05, clientCores: 0.2, clientSystemShare: 0.5, machineBusy: 0.6, lost: 0, closedSubscribers: 0,
      crashes: 0, keptUp: true,
    };
    const fanout = {
      instances: 2, subscribers: 200, payloadBytes: 64, repeats: 1, warmupMs: 100, measureMs: 100, pinning: null,
      targets: [
        { name: 'relay', points: [point], saturationRate: 100, saturationDeliveriesPerSec: 18_000, saturationIsLowerBound: false, halfSaturation: { ...point, rate: 50, p99Ms: 60 } },
        { name: 'floor', points: [point], saturationRate: 100, saturationDeliveriesPerSec: 20_000, saturationIsLowerBound: false },
      ],
    };
    const checks = checkTargets({ fanout, synth: { app: { command: 'a', runsMs: [300], medianMs: 300 }, oneResource: { command: 'b', runsMs: [100], medianMs: 100 }, ratio: 3 } });
    expect(checks.map((c) => [c.target, c.pass])).toEqual([
      ['fan-out saturation ≥ 0.9 × floor', true],
      ['p99 at half saturation ≤ 50 ms', false],
      ['with message recovery ≥ 0.75 × floor', null],
      ['under overload the relay sheds instead of crashing', null],
      ['idle footprint ≤ 7 KB/connection', null],
      ['idle footprint with tokens (claims kept, expiry scheduled) ≤ 7 KB/connection', null],
      ['synth ≤ 3 × one-resource app', true],
      ['artifact zip ≤ 300 KB', null],
      ['start to healthy ≤ 500 ms', null],
    ]);
    const md = renderReport({
      environment: captureEnvironment(), command: 'npm run bench', quick: true, startedAt: new Date(0), durationSec: 1,
      loadBefore: sampleLoad(), loadAfter: sampleLoad(), fanout,
    });
    expect(md).toContain('| fan-out saturation ≥ 0.9 × floor | 18,000 vs 20,000 deliveries/s = 0.90 × floor | pass |');
    expect(md).toContain('| p99 at half saturation ≤ 50 ms | 60.0 ms at 50 msg/s | **fail** |');
    expect(md).toContain('## 1. Fan-out');
  });
});
