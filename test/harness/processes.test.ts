/**
 * The process harness shared by `npm run dev`, the tests and the benchmarks (app/processes.ts, app/local-servers.ts,
 * app/free-port.ts): readiness is the relay's structured listening record, never its message text.
 */
import { createServer } from 'node:net';
import { expect } from '@jest/globals';
import { freePort } from '../../app/free-port';
import { listeningPort, relayListeningPort, startRedisProcess, startRelayProcess } from '../../app/local-servers';
import { jsonLine, livePids, startProcess, stopAllProcesses } from '../../app/processes';
import { useRelays } from '../helpers/fixtures';
import { requireRedisServer } from '../helpers/redis-server';

const relays = useRelays();

afterAll(() => stopAllProcesses());

/** A node process that prints `lines` (then stays up, unless `exit` is given). */
function printer(lines: readonly string[], exit?: number): { command: string; args: string[] } {
  const script = `for (const l of ${JSON.stringify(lines)}) console.log(l); ${exit === undefined ? 'setInterval(() => {}, 1000);' : `process.exit(${exit});`}`;
  return { command: process.execPath, args: ['-e', script] };
}

describe('relay readiness matcher', () => {
  it('matches the listening record by its event and port fields, whatever its message says', () => {
    expect(listeningPort({ level: 30, event: 'listening', port: 8123, msg: 'relay listening' })).toBe(8123);
    expect(listeningPort({ level: 30, event: 'listening', port: 8123, msg: 'ready for connections' })).toBe(8123);
    expect(listeningPort({ level: 30, event: 'listening', port: 8123 })).toBe(8123);
    expect(relayListeningPort(JSON.stringify({ event: 'listening', port: 9001, msg: 'a reworded sentence' }))).toBe(9001);
  });

  it('ignores the old sentence without the field, a port that is not a number and lines that are not records', () => {
    expect(listeningPort({ msg: 'relay listening', port: 8123 })).toBeUndefined();
    expect(listeningPort({ event: 'listening', port: '8123' })).toBeUndefined();
    expect(listeningPort({ event: 'draining', port: 8123 })).toBeUndefined();
    expect(relayListeningPort('relay listening on port 8123')).toBeUndefined();
    expect(relayListeningPort('{"event":"listening",')).toBeUndefined();
    expect(relayListeningPort('["listening", 8123]')).toBeUndefined();
    expect(jsonLine('{"a":1}')).toEqual({ a: 1 });
  });

  it('starts a process whose listening record carries another message, and not one that prints only the sentence', async () => {
    const reworded = printer([JSON.stringify({ level: 30, event: 'listening', port: 4567, msg: 'now accepting sockets' })]);
    const started = await startRelayProcess({ name: 'reworded', ...reworded, timeoutMs: 10_000 });
    expect(started.port).toBe(4567);
    await started.process.stop();

    // It exits after printing, so the harness has surely read the sentence when it gives up.
    const sentenceOnly = printer([JSON.stringify({ level: 30, port: 4567, msg: 'relay listening' })], 0);
    await expect(startRelayProcess({ name: 'sentence-only', ...sentenceOnly, timeoutMs: 30_000 })).rejects.toMatchObject({
      code: 'exited_early',
      message: 'sentence-only exited before its "listening" log record (exit code 0, signal null); last output:\n' +
        '{"level":30,"port":4567,"msg":"relay listening"}',
    });
    expect(livePids()).toEqual([]);
  });

  it('the bundled relay logs the record the harness matches, with the port it listens on', async () => {
    const relay = await relays.start();
    const records = relay.logs.map(jsonLine).filter((r) => r !== undefined);
    const listening = records.filter((r) => listeningPort(r) !== undefined);
    expect(listening).toHaveLength(1);
    expect(listening[0]).toMatchObject({ event: 'listening', port: relay.port, backplane: 'memory' });
    expect((await relay.health()).status).toBe(200);
  });
});

describe('startProcess', () => {
  it('reports a process that exits before its ready line with its exit code and its last output', async () => {
    const failing = printer(['starting', 'config is bad'], 3);
    const proc = startProcess('failing', failing.command, failing.args);
    await expect(proc.waitLine((l) => (l === 'ready' ? true : undefined), 10_000)).rejects.toMatchObject({
      code: 'exited_early',
      message: 'failing exited before its ready line (exit code 3, signal null); last output:\nstarting\nconfig is bad',
    });
    expect(await proc.exit).toEqual({ code: 3, signal: null });
  });

  it('stops with SIGTERM, and with SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const polite = printer(['up']);
    const a = startProcess('polite', polite.command, polite.args);
    await a.waitLine((l) => (l === 'up' ? true : undefined), 10_000);
    await a.stop(5_000);
    expect(await a.exit).toEqual({ code: null, signal: 'SIGTERM' });

    const stubborn = startProcess('stubborn', process.execPath, ['-e', "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000);"]);
    await stubborn.waitLine((l) => (l === 'up' ? true : undefined), 10_000);
    await stubborn.stop(300);
    expect(await stubborn.exit).toEqual({ code: null, signal: 'SIGKILL' });
    expect(livePids()).toEqual([]);
  });

  it('fails with the spawn error when the command does not exist', async () => {
    const missing = startProcess('missing', 'no-such-command-for-relay-tests', []);
    const exit = await missing.exit;
    expect(exit.error?.code).toBe('ENOENT');
    await expect(missing.waitLine(() => true, 1_000)).rejects.toMatchObject({ code: 'exited_early', cause: { code: 'ENOENT' } });
  });
});

describe('freePort and startRedisProcess', () => {
  it('hands out a loopback port that can be bound at once', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("starts redis-server on a free port other than 6379 once it accepts connections, and gives up at once when it is missing", async () => {
    requireRedisServer();
    const { port, process: redis } = await startRedisProcess({ args: (p) => ['--port', String(p), '--bind', '127.0.0.1', '--save', ''] });
    expect(port).not.toBe(6379);
    expect(redis.lines.some((l) => l.includes('Ready to accept connections'))).toBe(true);
    await redis.stop();

    await expect(startRedisProcess({ command: 'no-such-redis-server', args: (p) => ['--port', String(p)] })).rejects.toMatchObject({
      code: 'exited_early',
      message: expect.stringMatching(/^redis-server exited before its ready line \(spawn no-such-redis-server ENOENT\)/),
    });
  });
});
