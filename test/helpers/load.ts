/**
 * Load and fault helpers for the reliability suite: joins and closes watched across many clients, process
 * measurements read from /proc, and Prometheus scrapes. Everything is bounded in count and time. Many clients are
 * opened through useClients().connectMany (./fixtures), which also closes them.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import WebSocket from 'ws';
import type { TestClient } from './ws-client';

// The benchmarks' own helpers, shared so each lives in one place.
export { rssBytes } from '../../bench/lib/proc-stats';
export { closeSocket as closeRaw } from '../../bench/lib/ws-load';

/** Relay settings that take the rate limiter and the room budget out of the way of tests that measure relaying. */
export function trustedEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { RELAY_RATE_LIMIT: '1000000', RELAY_RATE_BURST: '1000000', RELAY_ROOM_CREATE_BUDGET: '1000000', ...extra };
}

/** Joins every client to `room`, asserting each ack; `concurrency` joins in flight at a time. */
export async function joinAll(clients: readonly TestClient[], room: string, concurrency = 100): Promise<void> {
  for (let start = 0; start < clients.length; start += concurrency) {
    const replies = await Promise.all(
      clients.slice(start, start + concurrency).map((c) => c.request({ type: 'join', room, id: `join-${room}` }, 20_000)),
    );
    for (const reply of replies) expect(reply).toMatchObject({ type: 'ack', id: `join-${room}` });
  }
}

/** Records every close event of the given clients, so a test can prove none happened. */
export function watchCloses(clients: readonly TestClient[]): { readonly closes: Array<{ code: number; at: number }> } {
  const closes: Array<{ code: number; at: number }> = [];
  for (const c of clients) c.ws.on('close', (code) => closes.push({ code, at: Date.now() }));
  return { closes };
}

/** Open sockets of a process: /proc/<pid>/fd entries that link to socket:[inode]. */
export function socketCount(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) count++;
    } catch {
      // The descriptor closed between readdir and readlink.
    }
  }
  return count;
}

export const MB = 1024 * 1024;

/**
 * Fetches /metrics from the relay's internal server (`metricsUrl`) and returns the value of one sample (`name` or
 * `name{labels}` exactly as exposed), or 0 when absent.
 */
export async function metricValue(metricsUrl: string, sample: string): Promise<number> {
  const text = await getText(`${metricsUrl}/metrics`);
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

/** GET a URL and resolve with the status and body text. */
export function getText(url: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no response within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * A timer for a delay that is itself a scenario parameter (e.g. "Redis comes back after 3 s").
 * Never use it to wait for a condition.
 */
export function injectedDelay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * A light client for bulk connection tests: a raw `ws` socket that resolves once the welcome frame arrives
 * and otherwise only counts what it receives (no JSON parsing), so thousands fit in the test process.
 */
export function openRaw(url: string, opts: WebSocket.ClientOptions = {}, timeoutMs = 20_000): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...opts });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`openRaw(${url}): no welcome frame within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('message', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(`openRaw(${url}): upgrade refused with HTTP ${res.statusCode ?? 'unknown'}`));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight; resolves with the results in order. */
export async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, () => worker()));
  return results;
}
