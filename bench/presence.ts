/**
 * Presence benchmark (issue 18): 10,000 members in one room, spread over two relays on one redis-server, each a real
 * WebSocket connection that joined the room; a member asks `presence` again and again and the benchmark measures the
 * time from sending the frame to reading the reply (exact count, list capped at RELAY_PRESENCE_LIST_MAX).
 */
import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from './lib/histogram';
import { connectRawMember } from './lib/raw-subscriber';
import { startBenchRedis, startBenchRelay, type BenchRelay, type BenchTarget } from './lib/servers';
import { connectMany, connectMember, type LoadSocket } from './lib/ws-load';

const ROOM = 'bench-presence';
const REPLY_TIMEOUT_MS = 10_000;

export interface PresenceBenchOptions {
  /** The bundled relay. */
  readonly target: BenchTarget;
  /** Members of the room, spread evenly over the two relays. @default 10000 */
  readonly members: number;
  /** `presence` requests measured, one at a time, after 50 not measured. @default 1000 */
  readonly requests: number;
  readonly log: (line: string) => void;
}

export interface PresenceBenchResult {
  readonly members: number;
  readonly requests: number;
  /** The count every reply carried (members + the asker); wrong counts are errors. */
  readonly count: number;
  readonly errors: number;
  readonly listed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** The target of the issue: median presence answer on loopback. */
export const PRESENCE_P50_TARGET_MS = 5;

export async function runPresenceBench(opts: PresenceBenchOptions): Promise<PresenceBenchResult> {
  const redis = await startBenchRedis();
  const relays: BenchRelay[] = [];
  let members: LoadSocket[] = [];
  try {
    const env = { REDIS_URL: redis.url, RELAY_MAX_CONNECTIONS: String(opts.members + 100) };
    relays.push(await startBenchRelay('presence-a', opts.target, env), await startBenchRelay('presence-b', opts.target, env));
    opts.log(`presence: joining ${opts.members.toLocaleString('en-US')} members to one room over two relays`);
    members = await connectMany(opts.members, 100, (i) => connectRawMember(relays[i % 2].wsUrl, ROOM, () => undefined));
    const asker = await connectMember(relays[0].wsUrl, ROOM);
    const expected = opts.members + 1;
    const histogram = new LatencyHistogram();
    let errors = 0;
    let listed = 0;
    let pending: { id: string; resolve: (text: string) => void } | null = null;
    asker.ws.on('message', (data) => {
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8');
      if (pending !== null && text.includes(`"id":"${pending.id}"`)) pending.resolve(text);
    });
    const ask = (id: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no presence reply within ${REPLY_TIMEOUT_MS} ms`)), REPLY_TIMEOUT_MS);
        pending = { id, resolve: (text) => (clearTimeout(timer), resolve(text)) };
        asker.ws.send(JSON.stringify({ type: 'presence', room: ROOM, id }));
      });
    opts.log(`presence: ${opts.requests} requests, one at a time`);
    for (let i = -50; i < opts.requests; i++) {
      const started = performance.now();
      const reply = JSON.parse(await ask(`p${i}`)) as { type: string; count?: number; members?: unknown[] };
      const elapsed = performance.now() - started;
      if (i < 0) continue;
      if (reply.type !== 'presence' || reply.count !== expected) errors++;
      listed = reply.members?.length ?? 0;
      histogram.record(elapsed);
    }
    await asker.close();
    return {
      members: expected,
      requests: opts.requests,
      count: expected,
      errors,
      listed,
      p50Ms: histogram.quantile(0.5),
      p99Ms: histogram.quantile(0.99),
      maxMs: histogram.max,
    };
  } finally {
    await Promise.all(members.map((m) => m.close()));
    await Promise.all(relays.map((r) => r.stop()));
    await redis.stop();
  }
}

export function presenceSection(r: PresenceBenchResult): string[] {
  const pass = r.errors === 0 && r.p50Ms <= PRESENCE_P50_TARGET_MS;
  return [
    '## Presence',
    '',
    `${r.members.toLocaleString('en-US')} members in one room (real WebSocket connections that joined it, spread over two relays on one redis-server); ` +
      `one member sends ${r.requests} \`presence\` frames one at a time (after 50 not measured). Latency: from sending the frame to reading the reply ` +
      `(exact count, ${r.listed} members listed: RELAY_PRESENCE_LIST_MAX). Target: median ≤ ${PRESENCE_P50_TARGET_MS} ms on loopback.`,
    '',
    '| members | requests | wrong replies | p50 / p99 / max | result |',
    '|---|---|---|---|---|',
    `| ${r.members.toLocaleString('en-US')} | ${r.requests} | ${r.errors} | ${r.p50Ms.toFixed(2)} ms / ${r.p99Ms.toFixed(2)} ms / ${r.maxMs.toFixed(2)} ms | ${pass ? 'pass' : '**fail**'} |`,
    '',
  ];
}
