import { createServer, type Socket } from 'node:net';
import { expect } from '@jest/globals';
import pino from 'pino';
import { RedisBackplane, type RedisBackplaneOptions } from '../../service/backplane/redis';
import { script } from '../../service/backplane/history';
import { BackplaneUnavailableError, extraChannel, roomExtraChannel, roomKey } from '../../service/backplane/types';
import { freePort } from '../../app/free-port';
import { observe, waitState } from '../helpers/backplane-observer';
import { useClients, useRedis } from '../helpers/fixtures';
import { requireRedisServer, waitUntil, type RedisServer } from '../helpers/redis-server';

const logger = pino({ level: 'silent' });
const redisServers = useRedis();
const clients = useClients();

function backplane(url: string, instanceId: string, extra: Partial<RedisBackplaneOptions> = {}): RedisBackplane {
  return clients.track(new RedisBackplane({ url, instanceId, channelPrefix: 'test', logger, ...extra }));
}

describe('test fixtures', () => {
  it('fails with install instructions when redis-server is not on PATH', () => {
    expect(() => requireRedisServer({ ...process.env, PATH: '/nonexistent' })).toThrow(
      'redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server redis-tools) and re-run the tests.',
    );
    expect(() => requireRedisServer()).not.toThrow();
  });
});

describe('RedisBackplane against one redis-server', () => {
  const shared = useRedis({ per: 'block' });
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await shared.start();
  });

  it('delivers room and broadcast frames to other instances and drops its own', async () => {
    const a = backplane(redis.url, 'a');
    const b = backplane(redis.url, 'b');
    const seenA = observe(a);
    const seenB = observe(b);
    await Promise.all([a.start(), b.start()]);
    expect(a.status()).toEqual({ kind: 'redis', state: 'ready' });
    await a.subscribe('lobby');
    await b.subscribe('lobby');

    await a.publish('lobby', Buffer.from('{"room":"lobby","n":1}'));
    await a.publish(null, Buffer.from('{"n":2}'));
    await seenB.waitFrames(2);
    expect(seenB.frames).toEqual([
      { target: 'lobby', text: '{"room":"lobby","n":1}' },
      { target: null, text: '{"n":2}' },
    ]);

    await b.publish('lobby', Buffer.from('from-b'));
    await seenA.waitFrames(1);
    // b's own publish came back from Redis too, and was dropped: b still holds only a's two frames.
    expect(seenA.texts()).toEqual(['from-b']);
    expect(seenB.frames).toHaveLength(2);
  });

  it('keeps per-publisher order and hands the frame bytes over unchanged', async () => {
    const a = backplane(redis.url, 'a');
    const b = backplane(redis.url, 'b');
    const seenB = observe(b);
    await Promise.all([a.start(), b.start()]);
    await b.subscribe('order');
    const bytes = Buffer.from('{"data":"héllo ✓ \\u0000"}');
    await a.publish('order', bytes);
    for (let i = 0; i < 500; i++) void a.publish('order', Buffer.from(String(i)));
    await seenB.waitFrames(501);
    expect(Buffer.from(seenB.frames[0].text)).toEqual(bytes);
    expect(seenB.texts().slice(1)).toEqual(Array.from({ length: 500 }, (_, i) => String(i)));
  });

  it('isolates two apps that share one Redis through the channel prefix', async () => {
    const app1a = backplane(redis.url, 'a', { channelPrefix: 'app1' });
    const app1b = backplane(redis.url, 'b', { channelPrefix: 'app1' });
    const app2 = backplane(redis.url, 'c', { channelPrefix: 'app2' });
    const seen1 = observe(app1b);
    const seen2 = observe(app2);
    await Promise.all([app1a.start(), app1b.start(), app2.start()]);
    await app1b.subscribe('lobby');
    await app2.subscribe('lobby');
    await app1a.publish('lobby', Buffer.from('app1-room'));
    await app1a.publish(null, Buffer.from('app1-all'));
    await seen1.waitFrames(2);
    // A round trip through app2's own channel proves app2's subscriber has processed everything before it.
    const app2b = backplane(redis.url, 'd', { channelPrefix: 'app2' });
    await app2b.start();
    await app2b.publish(null, Buffer.from('app2-marker'));
    await seen2.waitFrames(1);
    expect(seen2.texts()).toEqual(['app2-marker']);
  });

  it('subscribes a room channel on demand and unsubscribes it', async () => {
    const a = backplane(redis.url, 'a', { channelPrefix: 'ondemand' });
    await a.start();
    const channels = async () => (await redis.cli('PUBSUB', 'CHANNELS', 'ondemand:*')).split('\n').filter(Boolean).sort();
    // The broadcast and control channels are always subscribed; room channels only while the room has members.
    expect(await channels()).toEqual(['ondemand:broadcast', 'ondemand:control']);
    await a.subscribe('r1');
    await a.subscribe('r1');
    expect(await channels()).toEqual(['ondemand:broadcast', 'ondemand:control', 'ondemand:room:{r1}']);
    await a.unsubscribe('r1');
    expect(await channels()).toEqual(['ondemand:broadcast', 'ondemand:control']);
    await a.unsubscribe('never-joined');
  });

  it('fails when the URL or the CA file is unusable, naming the variable', () => {
    expect(() => backplane('http://127.0.0.1:6379', 'a')).toThrow(
      'REDIS_URL must start with redis:// or rediss:// (got "http://127.0.0.1:6379")',
    );
    expect(() => backplane('not a url', 'a')).toThrow(/^REDIS_URL is not a valid URL \(got "not a url"\)/);
    expect(() => backplane('rediss://127.0.0.1:1', 'a', { tlsCaFile: '/nonexistent/ca.pem' })).toThrow(
      /^REDIS_TLS_CA_FILE "\/nonexistent\/ca.pem" cannot be read \(ENOENT/,
    );
    expect(() => backplane('redis://127.0.0.1:1', 'a', { tlsCaFile: '/x.pem' })).toThrow(/use rediss:\/\/ for TLS/);
    try {
      backplane('ftp://user:secret@host', 'a');
      throw new Error('expected a RedisConfigError');
    } catch (err) {
      expect((err as { code?: string }).code).toBe('invalid_redis_config');
      expect((err as Error).message).not.toContain('secret');
    }
  });

  it('closes idempotently and rejects a start that never became ready', async () => {
    const port = await freePort();
    const a = backplane(`redis://127.0.0.1:${port}`, 'a');
    const started = a.start();
    await Promise.all([a.close(), a.close()]);
    await expect(started).rejects.toThrow('the redis backplane was closed before it became ready');
    expect(a.status().state).toBe('closed');
    await expect(a.publish(null, Buffer.from('x'))).rejects.toBeInstanceOf(BackplaneUnavailableError);
  });
});

describe('RedisBackplane when Redis goes away', () => {
  it('keeps retrying when Redis is absent at boot and becomes ready when it appears', async () => {
    const port = await freePort();
    const a = backplane(`redis://127.0.0.1:${port}`, 'a');
    const seen = observe(a);
    let started = false;
    void a.start().then(() => {
      started = true;
    });
    await waitUntil(() => a.status().lastError !== undefined, 10_000, 'a connection error to be recorded');
    expect(a.status()).toMatchObject({ kind: 'redis', state: 'connecting', lastError: expect.stringMatching(/ECONNREFUSED/) });
    await expect(a.publish(null, Buffer.from('x'))).rejects.toThrow('the message backplane is unavailable; retry shortly');
    await redisServers.start({ port });
    await waitState(a, 'ready');
    await waitUntil(() => started, 5_000, 'start() to resolve');
    expect(seen.states).toEqual(['ready']);
  });

  it('goes down on kill -9, resubscribes after a restart on the same port and delivers again', async () => {
    const redis = await redisServers.start();
    const a = backplane(redis.url, 'a', { channelPrefix: 'restart' });
    const b = backplane(redis.url, 'b', { channelPrefix: 'restart' });
    const seenA = observe(a);
    const seenB = observe(b);
    await Promise.all([a.start(), b.start()]);
    await b.subscribe('room1');
    await a.publish('room1', Buffer.from('before'));
    await seenB.waitFrames(1);

    await redis.kill('SIGKILL');
    await waitState(a, 'down');
    await waitState(b, 'down');
    expect(a.status().lastError).toEqual(expect.any(String));
    const started = Date.now();
    await expect(a.publish('room1', Buffer.from('while-down'))).rejects.toBeInstanceOf(BackplaneUnavailableError);
    expect(Date.now() - started).toBeLessThan(500);
    // A room joined while Redis is down is subscribed once it is back.
    await b.subscribe('room2');

    await redis.restart();
    await waitState(a, 'ready', 15_000);
    await waitState(b, 'ready', 15_000);
    const channels = (await redis.cli('PUBSUB', 'CHANNELS', 'restart:*')).split('\n').filter(Boolean).sort();
    expect(channels).toEqual(['restart:broadcast', 'restart:control', 'restart:room:{room1}', 'restart:room:{room2}']);
    await a.publish('room1', Buffer.from('after-1'));
    await a.publish('room2', Buffer.from('after-2'));
    await a.publish(null, Buffer.from('after-all'));
    await seenB.waitFrames(4);
    expect(seenB.texts()).toEqual(['before', 'after-1', 'after-2', 'after-all']);
    expect(seenA.states).toEqual(['ready', 'down', 'ready']);
    expect(seenB.states).toEqual(['ready', 'down', 'ready']);
  });
});

describe('RedisBackplane extension points', () => {
  it('carries raw bytes on an extra channel and a per-room channel, and keeps them across a Redis restart', async () => {
    const redis = await redisServers.start();
    const a = backplane(redis.url, 'a', { channelPrefix: 'ext' });
    const b = backplane(redis.url, 'b', { channelPrefix: 'ext' });
    await Promise.all([a.start(), b.start()]);
    const got: string[] = [];
    await a.listen(extraChannel('ext', 'sync'), (m) => got.push(`a ${m.toString()}`));
    await b.listen(extraChannel('ext', 'sync'), (m) => got.push(`b ${m.toString()}`));
    await b.listen(roomExtraChannel('ext', 'presence', 'r1'), (m) => got.push(`b presence ${m.toString()}`));
    await a.publishRaw(extraChannel('ext', 'sync'), Buffer.from('hello'));
    // Every listener hears it, the publisher included: extra channels carry raw bytes, with no echo filter.
    await waitUntil(() => got.length === 2, 5_000, `both instances to hear the extra channel message (got ${JSON.stringify(got)})`);
    expect(got.sort()).toEqual(['a hello', 'b hello']);

    await redis.kill('SIGKILL');
    await waitState(a, 'down');
    await expect(a.publishRaw(extraChannel('ext', 'sync'), Buffer.from('x'))).rejects.toBeInstanceOf(BackplaneUnavailableError);
    await redis.restart();
    await waitState(a, 'ready', 15_000);
    await waitState(b, 'ready', 15_000);
    const channels = (await redis.cli('PUBSUB', 'CHANNELS', 'ext:*')).split('\n').filter(Boolean).sort();
    expect(channels).toEqual(['ext:broadcast', 'ext:control', 'ext:presence:{r1}', 'ext:sync']);
    got.length = 0;
    await a.publishRaw(roomExtraChannel('ext', 'presence', 'r1'), Buffer.from('joined'));
    await waitUntil(() => got.length === 1, 5_000, 'the per-room message after the restart');
    expect(got).toEqual(['b presence joined']);

    await b.unlisten(extraChannel('ext', 'sync'));
    expect((await redis.cli('PUBSUB', 'NUMSUB', 'ext:sync')).split('\n').filter(Boolean)).toEqual(['ext:sync', '1']);
  });

  it('loads a registered script before ready, runs it on the room key, and names the script when Redis refuses it', async () => {
    const redis = await redisServers.start();
    const counter = script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    const a = backplane(redis.url, 'a', { channelPrefix: 'lua' });
    a.registerScript(counter);
    await a.start();
    expect((await redis.cli('SCRIPT', 'EXISTS', counter.sha)).trim()).toBe('1');
    const key = roomKey('lua', 'count', 'r1');
    expect(await a.runScript(counter, [key], ['5'])).toBe(5);
    expect(await a.runScript(counter, [key], ['2'])).toBe(7);
    expect((await redis.cli('GET', 'lua:count:{r1}')).trim()).toBe('7');
    // Not registered: EVALSHA misses and the script is sent with EVAL.
    const echo = script('return ARGV[1]');
    expect(await a.runScript(echo, [key], ['bytes'])).toEqual(Buffer.from('bytes'));
    await expect(a.runScript(counter, [key], ['not-a-number'])).rejects.toThrow(
      new RegExp(`^script ${counter.sha.slice(0, 12)} failed on redis: .*not an integer`),
    );
  });
});

describe('RedisBackplane logging and hangs', () => {
  it('logs one warning per outage, not one per reconnect attempt', async () => {
    const lines: Array<{ level: number; msg: string }> = [];
    const capture = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
    const redis = await redisServers.start();
    // Stands in for Redis during the outage and counts reconnect attempts: accepts, then hangs up.
    const sockets = new Set<Socket>();
    let attempts = 0;
    const refuser = createServer((socket) => {
      attempts++;
      sockets.add(socket);
      socket.destroy();
    });
    try {
      const a = backplane(redis.url, 'a', { logger: capture });
      await a.start();
      await redis.kill('SIGKILL');
      await waitState(a, 'down');
      await new Promise<void>((resolve, reject) => {
        refuser.once('error', reject);
        refuser.listen(redis.port, '127.0.0.1', () => resolve());
      });
      await waitUntil(() => attempts >= 6, 20_000, `6 reconnect attempts (saw ${attempts})`);
      await new Promise<void>((resolve) => refuser.close(() => resolve()));
      await redis.restart();
      await waitState(a, 'ready', 15_000);
      const visible = lines.filter((l) => l.level >= 30).map((l) => l.msg);
      expect(visible).toEqual(['redis backplane ready', 'redis backplane down', 'redis backplane ready']);
    } finally {
      for (const socket of sockets) socket.destroy();
      refuser.close();
    }
  });

  it('bounds publishes to a hung Redis and reports it down until it answers again', async () => {
    const redis = await redisServers.start();
    try {
      const a = backplane(redis.url, 'a', { channelPrefix: 'hung' });
      const b = backplane(redis.url, 'b', { channelPrefix: 'hung' });
      const seenB = observe(b);
      await Promise.all([a.start(), b.start()]);
      await b.subscribe('r');
      redis.pause();
      const started = Date.now();
      await expect(a.publish('r', Buffer.from('into-the-void'))).rejects.toThrow(
        /^publishing to redis failed \(.*\); retry shortly$/,
      );
      expect(Date.now() - started).toBeLessThan(4_000);
      await waitState(a, 'down', 10_000);
      expect(a.status().lastError).toMatch(/^redis did not answer ROLE/);
      redis.resume();
      await waitState(a, 'ready', 10_000);
      await waitState(b, 'ready', 10_000);
      await a.publish('r', Buffer.from('after'));
      await waitUntil(() => seenB.texts().includes('after'), 10_000, 'delivery after the hang');
    } finally {
      // A paused server would leave the backplanes' close() waiting at teardown.
      redis.resume();
    }
  });
});

describe('RedisBackplane failover (cluster mode disabled)', () => {
  it('follows the primary when its node is demoted to a replica without a dropped connection', async () => {
    const nodeA = await redisServers.start();
    const nodeB = await redisServers.start();
    await nodeB.cli('REPLICAOF', nodeA.host, String(nodeA.port));
    const onA = backplane(nodeA.url, 'on-a', { channelPrefix: 'fo' });
    const onA2 = backplane(nodeA.url, 'on-a2', { channelPrefix: 'fo' });
    const seen = observe(onA);
    const seen2 = observe(onA2);
    await Promise.all([onA.start(), onA2.start()]);
    await onA.subscribe('r');
    await onA2.subscribe('r');
    await onA2.publish('r', Buffer.from('before'));
    await seen.waitFrames(1);

    // Promote B, demote A: the backplanes' connections to A stay open.
    await nodeB.cli('REPLICAOF', 'NO', 'ONE');
    await nodeA.cli('REPLICAOF', nodeB.host, String(nodeB.port));
    const demotedAt = Date.now();
    await waitUntil(() => seen.states.includes('down'), 5_000, 'the demotion to be noticed');
    await waitState(onA, 'ready', 5_000);
    await waitState(onA2, 'ready', 5_000);
    expect(Date.now() - demotedAt).toBeLessThan(5_000);

    // Both now publish and subscribe on B.
    const onB = (await nodeB.cli('PUBSUB', 'CHANNELS', 'fo:*')).split('\n').filter(Boolean).sort();
    expect(onB).toEqual(['fo:broadcast', 'fo:control', 'fo:room:{r}']);
    expect(await nodeB.cli('PUBSUB', 'NUMSUB', 'fo:room:{r}')).toBe('fo:room:{r}\n2\n');
    await onA2.publish('r', Buffer.from('after'));
    await seen.waitFrames(2);
    await onA.publish(null, Buffer.from('after-all'));
    await seen2.waitFrames(1);
    expect(seen.texts()).toEqual(['before', 'after']);
    expect(seen2.texts()).toEqual(['after-all']);
  });
});

describe('RedisBackplane over TLS with AUTH', () => {
  const shared = useRedis({ per: 'block' });
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await shared.start({ tls: true, password: 's3cret/pw' });
  });

  it('connects with rediss://, a CA file and the password in the URL', async () => {
    expect(redis.url).toBe(`rediss://:s3cret%2Fpw@127.0.0.1:${redis.port}`);
    const a = backplane(redis.url, 'a', { tlsCaFile: redis.caFile });
    const bare = `rediss://127.0.0.1:${redis.port}`;
    const b = backplane(bare, 'b', { tlsCaFile: redis.caFile, authToken: 's3cret/pw' });
    const seenB = observe(b);
    await Promise.all([a.start(), b.start()]);
    await b.subscribe('secure');
    await a.publish('secure', Buffer.from('over-tls'));
    await seenB.waitFrames(1);
    expect(seenB.texts()).toEqual(['over-tls']);
  });

  it('reports a wrong password as an error state and keeps running', async () => {
    const bare = `rediss://127.0.0.1:${redis.port}`;
    const a = backplane(bare, 'a', { tlsCaFile: redis.caFile, authToken: 'wrong' });
    void a.start().catch(() => undefined);
    await waitUntil(() => a.status().lastError !== undefined, 10_000, 'the AUTH failure to be recorded');
    expect(a.status()).toEqual({ kind: 'redis', state: 'connecting', lastError: expect.stringMatching(/WRONGPASS/) });
    // The URL's password wins over the token.
    const b = backplane(`rediss://:wrong@127.0.0.1:${redis.port}`, 'b', { tlsCaFile: redis.caFile, authToken: 's3cret/pw' });
    void b.start().catch(() => undefined);
    await waitUntil(() => b.status().lastError !== undefined, 10_000, 'the AUTH failure to be recorded');
    expect(b.status().lastError).toMatch(/WRONGPASS/);
  });

  it('refuses a server certificate not signed by the configured CA', async () => {
    const a = backplane(redis.url, 'a');
    void a.start().catch(() => undefined);
    await waitUntil(() => a.status().lastError !== undefined, 10_000, 'the TLS failure to be recorded');
    expect(a.status()).toEqual({ kind: 'redis', state: 'connecting', lastError: expect.stringMatching(/self.signed|unable to verify|local issuer/i) });
  });
});
