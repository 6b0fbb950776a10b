/**
 * A rolling deploy: one of two relays gets SIGTERM while clients on both publish. Its clients get 1001 within the
 * drain window, it exits 0 before its deadline, and nothing published on the surviving instance after the drain
 * started is lost for the clients that stayed there.
 */
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { joinAll, trustedEnv, watchCloses } from '../helpers/load';
import { waitUntil } from '../helpers/redis-server';
import type { TestClient } from '../helpers/ws-client';

jest.setTimeout(90_000);

const PER_RELAY = 20;
const DRAIN_WINDOW_MS = 2_000;
const SHUTDOWN_TIMEOUT_MS = 8_000;
/** Scheduling slack on a loaded machine for a close sent at the end of the window to arrive. */
const CLOSE_SLACK_MS = 1_500;
const ROOM = 'deploy';
const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

function publishEvery(client: TestClient, ms: number, max: number): { sent: () => number; stop: () => void } {
  let seq = 0;
  const timer = setInterval(() => {
    if (seq < max) client.send({ type: 'publish', room: ROOM, data: { seq: seq++ } });
  }, ms);
  return { sent: () => seq, stop: () => clearInterval(timer) };
}

describe('rolling deploy', () => {
  it('drains one relay with 1001 inside the window, exits 0, and loses nothing on the survivor', async () => {
    const redis = await redisServers.start();
    const [leaving, staying] = await relays.pair(trustedEnv({
      REDIS_URL: redis.url,
      RELAY_CHANNEL_PREFIX: 'deploy',
      RELAY_DRAIN_WINDOW_MS: String(DRAIN_WINDOW_MS),
      RELAY_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    }));
    const onLeaving = await clients.connectMany(leaving, PER_RELAY);
    const onStaying = await clients.connectMany(staying, PER_RELAY);
    await joinAll([...onLeaving, ...onStaying], ROOM);
    const stayingCloses = watchCloses(onStaying);

    const leavingPub = publishEvery(onLeaving[0], 10, 3_000);
    const stayingPub = publishEvery(onStaying[0], 10, 3_000);
    let drainFrom = 0;
    try {
      await onStaying[1].waitFor((f) => f.type === 'message' && f.from === onLeaving[0].welcome.connectionId, 10_000);

      const signalledAt = Date.now();
      drainFrom = stayingPub.sent();
      leaving.signal('SIGTERM');
      // The load balancer must see the instance leave: health turns 503 while it drains.
      await waitUntil(async () => (await leaving.health()).body.status === 'draining', DRAIN_WINDOW_MS, 'health to report draining');
      expect((await leaving.health()).status).toBe(503);
      const closes = await Promise.all(
        onLeaving.map(async (c) => ({ ...(await c.waitClose(DRAIN_WINDOW_MS + CLOSE_SLACK_MS + 5_000)), at: Date.now() })),
      );
      for (const close of closes) {
        expect({ code: close.code, reason: close.reason }).toEqual({ code: 1001, reason: 'server shutting down' });
        expect(close.at - signalledAt).toBeLessThanOrEqual(DRAIN_WINDOW_MS + CLOSE_SLACK_MS);
      }
      const exit = await leaving.waitExit(SHUTDOWN_TIMEOUT_MS + 2_000);
      const exitedAfterMs = Date.now() - signalledAt;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(exitedAfterMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
      await leaving.waitLog((l) => l.msg === 'shutdown complete');
      // Keep publishing on the survivor for a while after the other instance is gone.
      const target = stayingPub.sent() + 50;
      await onStaying[1].waitFor((f) => f.type === 'message' && (f.data as { seq?: number }).seq === target, 10_000);
    } finally {
      leavingPub.stop();
      stayingPub.stop();
    }
    const total = stayingPub.sent();
    onStaying[0].send({ type: 'publish', room: ROOM, data: 'end' });
    await Promise.all(onStaying.map((c) => c.waitFor((f) => f.data === 'end', 10_000)));
    const expected = Array.from({ length: total - drainFrom }, (_, i) => drainFrom + i);
    for (const c of onStaying) {
      const seqs = c
        .messages()
        .filter((m) => m.from === onStaying[0].welcome.connectionId && typeof m.data === 'object')
        .map((m) => (m.data as { seq: number }).seq)
        .filter((s) => s >= drainFrom);
      expect(seqs).toEqual(expected);
    }
    expect(stayingCloses.closes).toEqual([]);
    expect(staying.proc.exitCode).toBeNull();
    expect((await staying.health()).status).toBe(200);
  });
});
