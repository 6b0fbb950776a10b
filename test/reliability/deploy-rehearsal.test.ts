/**
 * Deploy rehearsal: three relays behind a load balancer that behaves like the ALB's target group (health checks,
 * deregistration delay that cuts what is left). Each relay in turn goes through the documented sequence —
 * deregister → delay → SIGTERM → start the new version → register — while relay-client.js clients publish and
 * receive through the balancer. The relays notice the health checks stop (RELAY_DEREGISTRATION_SILENCE_MS) and
 * drain with 1001 before the delay runs out; the clients reconnect to instances that stay and recover the gap.
 *
 * Asserted: no acked message lost, no message duplicated, every client closed at most once per replacement and
 * only with 1001 (never 1006), the balancer never had to cut a connection, every old relay exited 0.
 */
import WebSocket from 'ws';
import { RelayClient, type RelayCloseEvent, type RelayMessage } from '../../service/public/relay-client';
import { LB_HEALTH_PATH } from '../../service/load-balancer-health';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import type { RelayProcess } from '../helpers/relay-process';
import { waitUntil } from '../helpers/redis-server';
import { TestLoadBalancer } from '../helpers/test-load-balancer';

jest.setTimeout(240_000);

const RELAYS = 3;
const RECEIVERS = 24;
const PUBLISHERS = 3;
const PUBLISH_EVERY_MS = 40;
const ROOM = 'rehearsal';
/** Health check interval of the balancer; the relay drains after this silence (the stacks use the same ratio). */
const CHECK_INTERVAL_MS = 200;
const SILENCE_MS = 1_000;
const DRAIN_WINDOW_MS = 1_500;
/** Silence + drain window + margin, as the policy requires of the real deregistration delay. */
const DEREGISTRATION_DELAY_MS = 8_000;

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();

interface Receiver {
  readonly client: RelayClient;
  readonly got: RelayMessage[];
  readonly closes: { phase: number; event: RelayCloseEvent }[];
}

describe('deploy rehearsal behind a load balancer', () => {
  it('replaces every relay in turn with zero lost or duplicated messages and only 1001 closes', async () => {
    const redis = await redisServers.start();
    const env = (port: number): Record<string, string> =>
      trustedEnv({
        PORT: String(port),
        RELAY_METRICS_PORT: '0',
        REDIS_URL: redis.url,
        RELAY_CHANNEL_PREFIX: 'rehearsal',
        RELAY_DRAIN_WINDOW_MS: String(DRAIN_WINDOW_MS),
        RELAY_SHUTDOWN_TIMEOUT_MS: '10000',
        RELAY_DEREGISTRATION_SILENCE_MS: String(SILENCE_MS),
      });
    const lb = new TestLoadBalancer({
      healthPath: LB_HEALTH_PATH,
      intervalMs: CHECK_INTERVAL_MS,
      healthyThreshold: 2,
      unhealthyThreshold: 2,
      deregistrationDelayMs: DEREGISTRATION_DELAY_MS,
    });
    clients.track({ close: () => lb.close() });
    const lbPort = await lb.listen();
    const url = `ws://127.0.0.1:${lbPort}/ws`;

    const running: RelayProcess[] = [];
    for (let i = 0; i < RELAYS; i++) {
      const relay = await relays.start(env(0));
      running.push(relay);
      lb.register(`r${i}`, relay.port);
    }
    await Promise.all(running.map((_, i) => lb.waitHealthy(`r${i}`, 30_000)));

    let phase = -1;
    const newClient = (): RelayClient =>
      clients.track(new RelayClient({ urls: [url], WebSocket, backoff: { initialMs: 100, maxMs: 1_000 }, requestTimeoutMs: 20_000 }));
    const receivers: Receiver[] = [];
    for (let i = 0; i < RECEIVERS; i++) {
      const client = newClient();
      const r: Receiver = { client, got: [], closes: [] };
      client.on('message', (m) => r.got.push(m));
      client.on('close', (event) => r.closes.push({ phase, event }));
      receivers.push(r);
    }
    await Promise.all(receivers.map((r) => r.client.connect()));
    await Promise.all(receivers.map((r) => r.client.join(ROOM)));

    // Publishers go through the balancer too; each publish that was acked must reach every receiver exactly once.
    const acked: Set<number>[] = [];
    let publishing = true;
    const loops = Array.from({ length: PUBLISHERS }, async (_, p) => {
      const client = newClient();
      await client.connect();
      const mine = new Set<number>();
      acked.push(mine);
      for (let n = 0; publishing && n < 100_000; n++) {
        try {
          await client.publish(ROOM, { p, n });
          mine.add(n);
        } catch {
          // Refused while reconnecting: never acked, so not owed to anyone (and may arrive at most once).
        }
        await new Promise((r) => setTimeout(r, PUBLISH_EVERY_MS));
      }
      return { p, mine };
    });
    const ackedCount = (): number => acked.reduce((sum, s) => sum + s.size, 0);
    await waitUntil(() => ackedCount() >= PUBLISHERS * 10, 30_000, 'publishing to start');

    for (let i = 0; i < RELAYS; i++) {
      phase = i;
      const old = running[i];
      const result = await lb.deregister(`r${i}`);
      expect({ replaced: i, cut: result.cut }).toEqual({ replaced: i, cut: 0 });
      old.signal('SIGTERM');
      expect(await old.waitExit(15_000)).toEqual({ code: 0, signal: null });
      const fresh = await relays.start(env(old.port));
      running[i] = fresh;
      lb.register(`r${i}-new`, fresh.port);
      await lb.waitHealthy(`r${i}-new`, 30_000);
      const before = ackedCount();
      await waitUntil(() => ackedCount() >= before + PUBLISHERS * 5, 30_000, `publishing to go on after replacing relay ${i}`);
    }
    phase = RELAYS;

    publishing = false;
    const published = await Promise.all(loops);
    const owed = published.flatMap(({ p, mine }) => [...mine].map((n) => `${p}:${n}`));
    const key = (m: RelayMessage): string => {
      const d = m.data as { p: number; n: number };
      return `${d.p}:${d.n}`;
    };
    await waitUntil(
      () => receivers.every((r) => {
        const seen = new Set(r.got.map(key));
        return owed.every((k) => seen.has(k));
      }),
      60_000,
      'every receiver to hold every acked message',
    );

    for (const [i, r] of receivers.entries()) {
      const keys = r.got.map(key);
      const dupes = keys.filter((k, j) => keys.indexOf(k) !== j);
      expect({ receiver: i, dupes }).toEqual({ receiver: i, dupes: [] });
      for (const { p } of published) {
        const ns = r.got.filter((m) => (m.data as { p: number }).p === p).map((m) => (m.data as { n: number }).n);
        expect({ receiver: i, publisher: p, ordered: ns.every((n, j) => j === 0 || n > ns[j - 1]) }).toEqual({ receiver: i, publisher: p, ordered: true });
      }
      const codes = r.closes.map((c) => c.event.code);
      expect({ receiver: i, codes: codes.filter((c) => c !== 1001) }).toEqual({ receiver: i, codes: [] });
      const perPhase = new Map<number, number>();
      for (const c of r.closes) perPhase.set(c.phase, (perPhase.get(c.phase) ?? 0) + 1);
      expect({ receiver: i, over: [...perPhase].filter(([, n]) => n > 1) }).toEqual({ receiver: i, over: [] });
    }
    // The rehearsal did move clients: the first relay's clients were all closed and reconnected.
    expect(receivers.reduce((sum, r) => sum + r.closes.length, 0)).toBeGreaterThanOrEqual(RECEIVERS / RELAYS);
    expect(lb.refused).toBe(0);
  });
});
