import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { expect } from '@jest/globals';
import WebSocket from 'ws';
import { open, type Entry, type ZipFile } from 'yauzl';
import { buildArtifact } from '../../app/artifact';
import { freePort } from '../../app/free-port';
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

describe('the artifact boots as Beanstalk boots it', () => {
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

  it('runs the Procfile web command with PORT and no node_modules: /healthz is 200 and /ws sends the welcome frame', async () => {
    const artifact = await buildArtifact({ outDir: join(dir, 'dist') });
    const app = join(dir, 'app');
    mkdirSync(app);
    await unzip(artifact.zipPath, app);
    expect(existsSync(join(app, 'node_modules'))).toBe(false);

    const procfile = readFileSync(join(app, 'Procfile'), 'utf8');
    const match = /^web: (.+)$/m.exec(procfile);
    expect(match?.[1]).toBe('node --max-semi-space-size=4 server.js');
    const [cmd, ...args] = (match?.[1] ?? '').split(' ');
    expect(cmd).toBe('node');

    const port = await freePort();
    // Only what the platform sets: no REDIS_URL, so the relay runs with its in-memory backplane.
    const started = await startRelayProcess({
      name: 'unzipped relay',
      command: process.execPath,
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
  }, 180_000);
});
