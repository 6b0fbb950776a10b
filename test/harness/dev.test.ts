/** `npm run dev` (app/dev.ts): Redis and two relays sharing it, ready on their signals, all stopped on SIGTERM. */
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { expect } from '@jest/globals';
import { freePorts } from '../../app/free-port';
import { startProcess } from '../../app/processes';
import { useClients } from '../helpers/fixtures';
import { requireRedisServer } from '../helpers/redis-server';

jest.setTimeout(120_000);

const REPO_ROOT = resolve(__dirname, '..', '..');
const DEV = ['--import', 'tsx', join(REPO_ROOT, 'app', 'dev.ts')];

const clients = useClients();

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('npm run dev', () => {
  it('relays between its two relays through its Redis, and stops all three on SIGTERM', async () => {
    requireRedisServer();
    const [portA, portB] = await freePorts(2);
    const dev = startProcess('dev', process.execPath, DEV, {
      cwd: REPO_ROOT,
      env: { ...process.env, DEV_PORT_A: String(portA), DEV_PORT_B: String(portB) },
      keepLines: Infinity,
    });
    try {
      await dev.waitLine((l) => (l.startsWith('dev: open one page per relay') ? true : undefined), 60_000, 'its banner');
      const redisPort = Number(/^dev: Redis +redis:\/\/127\.0\.0\.1:(\d+)$/m.exec(dev.lines.join('\n'))?.[1]);
      expect(redisPort).toBeGreaterThan(0);
      expect(redisPort).not.toBe(6379);

      const a = await clients.connect(`ws://127.0.0.1:${portA}/ws`);
      const b = await clients.connect(`ws://127.0.0.1:${portB}/ws`);
      expect([a.welcome.instanceId, b.welcome.instanceId]).toEqual(['relay-a', 'relay-b']);
      await b.request({ type: 'join', room: 'dev', id: 'j' });
      await a.request({ type: 'publish', room: 'dev', data: 'across', id: 'p' });
      expect(await b.waitFor((f) => f.type === 'message', 10_000)).toMatchObject({ data: 'across', from: a.welcome.connectionId });
      // Every child's output is forwarded under its name.
      expect(dev.lines.some((l) => l.startsWith('[relay-a] {'))).toBe(true);
      expect(dev.lines.some((l) => l.startsWith('[redis] '))).toBe(true);

      dev.signal('SIGTERM');
      expect(await dev.waitExit(30_000)).toEqual({ code: 0, signal: null });
      expect(await Promise.all([portA, portB, redisPort].map(listening))).toEqual([false, false, false]);
    } finally {
      await dev.stop();
    }
  });

  it('exits 1 with the install hint when redis-server is missing', async () => {
    const [portA, portB] = await freePorts(2);
    const dev = startProcess('dev', process.execPath, DEV, {
      cwd: REPO_ROOT,
      env: { ...process.env, REDIS_SERVER: 'no-such-redis-server', DEV_PORT_A: String(portA), DEV_PORT_B: String(portB) },
      keepLines: Infinity,
    });
    try {
      expect(await dev.waitExit(30_000)).toEqual({ code: 1, signal: null });
      expect(dev.lines).toContain(
        'dev: redis-server not found (looked for "no-such-redis-server" on PATH). Install it (Debian/Ubuntu: sudo apt-get install redis-server; ' +
          'macOS: brew install redis) or set REDIS_SERVER to its path, then run npm run dev again.',
      );
    } finally {
      await dev.stop();
    }
  });
});
