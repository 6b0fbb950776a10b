import type { ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { RELAY_NODE_FLAGS } from '../../app/bundle';
import { startRelayProcess } from '../../app/local-servers';
import { jsonLine } from '../../app/processes';
import { TEST_BUILD_DIR } from '../global-setup';

/** A bundled relay running as a child process, as it runs on a Beanstalk instance. */
export interface RelayProcess {
  readonly port: number;
  readonly httpUrl: string;
  /** ws://127.0.0.1:<port>/ws */
  readonly wsUrl: string;
  readonly proc: ChildProcess;
  /** Every stdout and stderr line, in arrival order. */
  readonly logs: string[];
  health(): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Polls /healthz until it answers 200 (bounded by timeoutMs). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Resolves with the first JSON log record (past or future) matching pred. */
  waitLog(pred: (record: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  signal(sig: NodeJS.Signals): void;
  /** The exit; rejects when the relay still runs after timeoutMs. */
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops the process (SIGTERM, then SIGKILL); idempotent. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;

/**
 * Starts the bundled relay (.build/test-relay/server.js) as the artifact runs it, on an ephemeral port unless `env`
 * sets PORT; resolves once it logs its listening record (matched on fields, see app/local-servers.ts). Suites start
 * relays through useRelays() (./fixtures), which stops them after the test or block.
 */
export async function startRelay(env: Record<string, string> = {}): Promise<RelayProcess> {
  const { port, process: proc } = await startRelayProcess({
    name: 'relay',
    command: process.execPath,
    args: [...RELAY_NODE_FLAGS, join(TEST_BUILD_DIR, 'server.js')],
    cwd: TEST_BUILD_DIR,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    keepLines: Infinity,
    timeoutMs: START_TIMEOUT_MS,
  });
  const httpUrl = `http://127.0.0.1:${port}`;
  return {
    port,
    httpUrl,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    proc: proc.proc,
    logs: proc.lines,
    health: () => getJson(`${httpUrl}/healthz`),
    async waitHealthy(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      let last = 'no answer';
      for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
        try {
          const h = await getJson(`${httpUrl}/healthz`);
          if (h.status === 200) return;
          last = `${h.status} ${JSON.stringify(h.body)}`;
        } catch (err) {
          last = (err as Error).message;
        }
        await delay(100);
      }
      throw new Error(`relay on port ${port} not healthy within ${timeoutMs} ms (last: ${last})`);
    },
    waitLog: (pred, timeoutMs = 10_000) =>
      proc.waitLine((line) => {
        const record = jsonLine(line);
        return record !== undefined && pred(record) ? record : undefined;
      }, timeoutMs, 'the expected log record'),
    signal: (sig) => proc.signal(sig),
    async waitExit(timeoutMs = 20_000) {
      const exit = await proc.waitExit(timeoutMs);
      if (exit === null) throw new Error(`relay on port ${port} still running after ${timeoutMs} ms`);
      return { code: exit.code, signal: exit.signal };
    },
    stop: () => proc.stop(),
  };
}

function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
        } catch {
          reject(new Error(`GET ${url}: ${res.statusCode} non-JSON body: ${text.slice(0, 200)}`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no response within 5000 ms`)));
    req.on('error', reject);
    req.end();
  });
}

// Only used between health polls, never as a substitute for waiting on a condition.
function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
