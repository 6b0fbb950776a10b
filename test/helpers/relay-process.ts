import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { RELAY_NODE_FLAGS } from '../../app/bundle';
import { TEST_BUILD_DIR } from '../global-setup';

/** A bundled relay running as a child process, as it runs on a Beanstalk instance. */
export interface RelayProcess {
  readonly port: number;
  readonly httpUrl: string;
  /** ws://127.0.0.1:<port>/ws */
  readonly wsUrl: string;
  /** http://127.0.0.1:<metrics port>: the internal server with /metrics and /healthz/detail. */
  readonly metricsUrl: string;
  readonly proc: ChildProcess;
  /** stdout and stderr lines, in arrival order. */
  readonly logs: string[];
  health(): Promise<{ status: number; body: Record<string, unknown> }>;
  /** /healthz/detail on the internal port: the health report with the backplane's last error and the limits. */
  healthDetail(): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Polls /healthz until it answers 200 (bounded by timeoutMs). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Resolves with the first JSON log line (past or future) matching pred. */
  waitLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  signal(sig: NodeJS.Signals): void;
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops the process (SIGTERM, then SIGKILL); idempotent. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;
const running = new Set<RelayProcess>();

/** Starts the bundled relay (.build/test-relay/server.js) as the artifact runs it, on an ephemeral port; resolves once it logs 'relay listening'. */
export function startRelay(env: Record<string, string> = {}): Promise<RelayProcess> {
  const serverJs = join(TEST_BUILD_DIR, 'server.js');
  const proc = spawn(process.execPath, [...RELAY_NODE_FLAGS, serverJs], {
    cwd: TEST_BUILD_DIR,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      // Every client of a test comes from 127.0.0.1 and stands for many users; tests of these limits set them.
      RELAY_MAX_CONNECTIONS_PER_ADDRESS: '0',
      RELAY_CONNECT_RATE_PER_ADDRESS: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const lineListeners = new Set<(line: string) => void>();
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exitListeners = new Set<() => void>();

  const onData = (stream: NodeJS.ReadableStream): void => {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line: string) => {
      logs.push(line);
      for (const l of [...lineListeners]) l(line);
    });
  };
  onData(proc.stdout as NodeJS.ReadableStream);
  onData(proc.stderr as NodeJS.ReadableStream);
  proc.on('exit', (code, signal) => {
    exitInfo = { code, signal };
    for (const l of [...exitListeners]) l();
  });

  const waitLog = (pred: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> => {
    for (const line of logs) {
      const parsed = parseLine(line);
      if (parsed && pred(parsed)) return Promise.resolve(parsed);
    }
    return new Promise((resolve, reject) => {
      const listener = (line: string): void => {
        const parsed = parseLine(line);
        if (!parsed || !pred(parsed)) return;
        cleanup();
        resolve(parsed);
      };
      const onExit = (): void => {
        cleanup();
        reject(new Error(`relay exited (${JSON.stringify(exitInfo)}) before the expected log line; output:\n${logs.join('\n')}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching relay log line within ${timeoutMs} ms; output:\n${logs.join('\n')}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        lineListeners.delete(listener);
        exitListeners.delete(onExit);
      };
      lineListeners.add(listener);
      if (exitInfo) onExit();
      else exitListeners.add(onExit);
    });
  };

  const waitExit = (timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    if (exitInfo) return Promise.resolve(exitInfo);
    return new Promise((resolve, reject) => {
      const onExit = (): void => {
        clearTimeout(timer);
        exitListeners.delete(onExit);
        if (exitInfo) resolve(exitInfo);
      };
      const timer = setTimeout(() => {
        exitListeners.delete(onExit);
        reject(new Error(`relay still running after ${timeoutMs} ms`));
      }, timeoutMs);
      exitListeners.add(onExit);
    });
  };

  // Above LOG_LEVEL=info there is no 'relay listening' line: a test that needs such a level gives PORT (and
  // RELAY_METRICS_PORT, default PORT + 1000) itself, and readiness is the first HTTP answer on it.
  const fixedPort = env.PORT !== undefined && env.PORT !== '0' ? Number(env.PORT) : undefined;
  const listening: Promise<Record<string, unknown>> =
    fixedPort === undefined
      ? waitLog((l) => l.msg === 'relay listening' && typeof l.port === 'number', START_TIMEOUT_MS)
      : waitAnswering(fixedPort, () => exitInfo, START_TIMEOUT_MS).then(() => ({
          port: fixedPort,
          metricsPort: env.RELAY_METRICS_PORT ? Number(env.RELAY_METRICS_PORT) : fixedPort + 1000,
        }));
  return listening.then(
    (line) => {
      const port = line.port as number;
      const httpUrl = `http://127.0.0.1:${port}`;
      const relay: RelayProcess = {
        port,
        httpUrl,
        wsUrl: `ws://127.0.0.1:${port}/ws`,
        metricsUrl: `http://127.0.0.1:${String(line.metricsPort)}`,
        proc,
        logs,
        health: () => getJson(`${httpUrl}/healthz`),
        healthDetail: () => getJson(`http://127.0.0.1:${String(line.metricsPort)}/healthz/detail`),
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
        waitLog,
        signal(sig) {
          if (!exitInfo) proc.kill(sig);
        },
        waitExit,
        async stop() {
          running.delete(relay);
          if (exitInfo) return;
          proc.kill('SIGTERM');
          try {
            await waitExit(5_000);
          } catch {
            proc.kill('SIGKILL');
            await waitExit(5_000);
          }
        },
      };
      running.add(relay);
      return relay;
    },
    (err: unknown) => {
      if (!exitInfo) proc.kill('SIGKILL');
      throw new Error(`relay did not start: ${(err as Error).message}`);
    },
  );
}

/** Stops every relay started by this test file that is still running. */
export async function stopAllRelays(): Promise<void> {
  await Promise.all([...running].map((r) => r.stop()));
}

function parseLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    const v: unknown = JSON.parse(line);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
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

/** Polls GET /healthz on `port` until anything answers; rejects when the process exits or the time is up. */
async function waitAnswering(port: number, exited: () => unknown, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (exited()) throw new Error(`relay exited (${JSON.stringify(exited())}) before answering on port ${port}`);
    try {
      await getJson(`http://127.0.0.1:${port}/healthz`);
      return;
    } catch {
      await delay(50);
    }
  }
  throw new Error(`nothing answered on port ${port} within ${timeoutMs} ms`);
}

// Only used between health polls, never as a substitute for waiting on a condition.
function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
