/**
 * Every command a redis-server receives from its clients, read with `redis-cli MONITOR`: tests count the commands that
 * touch given keys. Commands run inside scripts (MONITOR shows them as `[0 lua]`) are left out: a script call counts once.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { waitUntil, type RedisServer } from './redis-server';

export interface RedisMonitor {
  /** Client commands seen so far (MONITOR's lines, e.g. `"EVALSHA" "…" "3" "app:presence:{lobby}" …`). */
  readonly commands: readonly string[];
  /** How many of them match `pattern`. */
  count(pattern: RegExp): number;
  /** Resolves once MONITOR has shown every command Redis ran before the call (a marker ECHO sent after them shows up). */
  sync(): Promise<void>;
  /** Stops redis-cli; resolves once it exited. Idempotent. */
  close(): Promise<void>;
}

const STARTED_TIMEOUT_MS = 10_000;

/** Starts MONITOR on `server` (plaintext, no password) and resolves once Redis confirmed it. */
export async function monitorRedis(server: RedisServer): Promise<RedisMonitor> {
  const child = spawn('redis-cli', ['-h', server.host, '-p', String(server.port), 'MONITOR'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const commands: string[] = [];
  let started: () => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    started = resolve;
    const timer = setTimeout(() => reject(new Error(`redis-cli MONITOR did not start within ${STARTED_TIMEOUT_MS} ms`)), STARTED_TIMEOUT_MS);
    timer.unref();
    child.once('error', reject);
    void exited.then(() => reject(new Error('redis-cli MONITOR exited before it started')));
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'OK') return started();
    if (!line.includes(' lua] ')) commands.push(line);
  });
  let syncs = 0;
  const sync = async (): Promise<void> => {
    const marker = `monitor-sync-${process.pid}-${++syncs}`;
    await server.cli('ECHO', marker);
    await waitUntil(() => commands.some((c) => c.includes(marker)), 5000, 'MONITOR to show its sync marker');
  };
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  try {
    await ready;
  } catch (err) {
    await close();
    throw err;
  }
  return { commands, count: (pattern) => commands.filter((c) => pattern.test(c)).length, sync, close };
}
