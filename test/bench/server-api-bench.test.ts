import { join } from 'node:path';
import { expect } from '@jest/globals';
import { RELAY_NODE_FLAGS } from '../../app/bundle';
import { livePids, stopAllProcesses } from '../../app/processes';
import { runServerApiBench, serverApiSection } from '../../bench/server-api';
import { TEST_BUILD_DIR } from '../global-setup';

// A tiny configuration of the server API benchmark: the harness works end to end and cleans up; numbers are not judged.
afterAll(async () => {
  await stopAllProcesses();
});

describe('server API bench smoke run', () => {
  it('publishes through the API of two relays, counts every delivery and renders its section', async () => {
    const target = {
      name: 'api',
      script: join(TEST_BUILD_DIR, 'server.js'),
      cwd: TEST_BUILD_DIR,
      nodeFlags: RELAY_NODE_FLAGS,
      env: { RELAY_MAX_CONNECTIONS_PER_ADDRESS: '0', RELAY_CONNECT_RATE_PER_ADDRESS: '0' },
    };
    const r = await runServerApiBench({ target, members: 10, rate: 50, durationMs: 1000, warmupMs: 200, log: () => undefined });
    expect(r.errors).toBe(0);
    expect(r.requests).toBe(50);
    expect(r.deliveries).toBe(r.expectedDeliveries);
    expect(r.expectedDeliveries).toBe(60 * 10);
    expect(r.requestP99Ms).toBeGreaterThan(0);
    expect(r.deliveryP99Ms).toBeGreaterThan(0);
    // The warm-up's 10 requests are timed apart from the measured 50.
    expect(r.warmupSec).toBe(0.2);
    expect(r.warmupP99Ms).toBeGreaterThan(0);
    expect(r.warmupMaxMs).toBeGreaterThanOrEqual(r.warmupP99Ms);
    // The publisher is its own process: the send time it writes into each payload is mapped onto this process's
    // clock, so delivery latencies are real loopback times (a wrong mapping reads as 0 or as seconds).
    expect(r.deliveryP50Ms).toBeGreaterThan(0.05);
    expect(r.deliveryP99Ms).toBeLessThan(5_000);
    expect(r.cpu.relays).toBeGreaterThan(0);
    expect(r.cpu.publisher).toBeGreaterThan(0);
    expect(Number.isFinite(r.publisherLoopDelayP99Ms)).toBe(true);
    // Every publish runs the append script; requests of one turn may share a call, never need two.
    expect(r.scriptCallsPerRequest).toBeGreaterThan(0);
    expect(r.scriptCallsPerRequest).toBeLessThanOrEqual(1.1);
    expect(livePids()).toEqual([]);
    const md = serverApiSection(r).join('\n');
    expect(md).toContain('## Server API');
    expect(md).toContain('| 50 |');
    expect(md).toContain('CPU over the measured window');
    expect(md).toContain("Warm-up, timed apart and not judged (the relays' first 0.2 s of requests");
  }, 60_000);
});
