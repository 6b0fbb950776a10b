import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import * as yauzl from 'yauzl';
import { buildArtifact } from '../app/artifact';
import { freePort } from '../app/free-port';
import { startProcess } from '../app/processes';
import { startBenchRedis } from './lib/servers';
import { median } from './lib/stats';

export interface ArtifactOptions {
  /** Starts per mode; the median is reported. @default 5 */
  readonly runs?: number;
  /** Give up on one start after this long. @default 10000 */
  readonly startTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface StartupMeasurement {
  /** 'redis' (REDIS_URL set, as deployed) or 'memory' (no REDIS_URL). */
  readonly mode: 'redis' | 'memory';
  readonly runsMs: number[];
  readonly medianMs: number;
}

export interface ArtifactResult {
  readonly label: string;
  /** Time buildArtifact() took (bundle, zip, hash) in this process. */
  readonly buildMs: number;
  readonly zipBytes: number;
  /** Uncompressed size of every entry. */
  readonly unzippedBytes: number;
  readonly entries: string[];
  readonly startup: StartupMeasurement[];
}

/** Thrown when the unzipped artifact does not become healthy; `code` is stable for callers and tests. */
export class ArtifactStartError extends Error {
  readonly code = 'artifact_not_healthy';
}

/**
 * Builds the deployable zip, unzips it into a temporary folder and measures, from spawning the Procfile's web command
 * to the first 200 from /healthz, how long the relay takes to become healthy.
 */
export async function runArtifact(opts: ArtifactOptions = {}): Promise<ArtifactResult> {
  const runs = opts.runs ?? 5;
  const timeoutMs = opts.startTimeoutMs ?? 10_000;
  const log = opts.log ?? (() => undefined);
  const work = mkdtempSync(join(tmpdir(), 'bench-artifact-'));
  const redis = await startBenchRedis();
  try {
    const buildStart = performance.now();
    const artifact = await buildArtifact({ outDir: join(work, 'zips') });
    const buildMs = performance.now() - buildStart;
    const appDir = join(work, 'app');
    const { entries, bytes } = await unzip(artifact.zipPath, appDir);
    const startup: StartupMeasurement[] = [];
    for (const mode of ['redis', 'memory'] as const) {
      const runsMs: number[] = [];
      for (let i = 0; i < runs; i++) {
        const ms = await timeToHealthy(appDir, mode === 'redis' ? { REDIS_URL: redis.url } : {}, timeoutMs);
        runsMs.push(ms);
        log(`artifact start (${mode}) run ${i + 1}/${runs}: ${ms.toFixed(0)} ms to the first 200 from /healthz`);
      }
      startup.push({ mode, runsMs, medianMs: median(runsMs) });
    }
    return { label: artifact.label, buildMs, zipBytes: artifact.sizeBytes, unzippedBytes: bytes, entries, startup };
  } finally {
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

async function timeToHealthy(appDir: string, env: Record<string, string>, timeoutMs: number): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const proc = startProcess('artifact-relay', process.execPath, procfileNodeArgs(appDir), {
    cwd: appDir,
    env: { ...process.env, NODE_ENV: 'production', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
  });
  try {
    // Polled every 5 ms: the resolution of the measurement, small against the 500 ms target.
    for (let i = 0; i < timeoutMs / 5 + 1; i++) {
      if (proc.exited()) throw new ArtifactStartError(`the unzipped relay exited before it was healthy; last output:\n${proc.lines.join('\n')}`);
      if ((await healthStatus(port)) === 200) return performance.now() - t0;
      if (performance.now() - t0 > timeoutMs) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new ArtifactStartError(`the unzipped relay on port ${port} did not answer 200 on /healthz within ${timeoutMs} ms; last output:\n${proc.lines.join('\n')}`);
  } finally {
    await proc.stop();
  }
}

/** The arguments of the Procfile's `web: node …` command, so the relay starts exactly as the platform starts it. */
function procfileNodeArgs(appDir: string): string[] {
  const procfile = readFileSync(join(appDir, 'Procfile'), 'utf8');
  const web = /^web:\s*(.+)$/m.exec(procfile)?.[1].trim().split(/\s+/);
  if (!web || web[0] !== 'node') {
    throw new ArtifactStartError(`the artifact's Procfile has no "web: node …" command; it reads:\n${procfile}`);
  }
  return web.slice(1);
}

function healthStatus(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/healthz', timeout: 1_000, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Extracts every entry of a zip below `dest` (refusing paths that would escape it). */
function unzip(zipPath: string, dest: string): Promise<{ entries: string[]; bytes: number }> {
  return new Promise((resolvePromise, reject) => {
    yauzl.open(zipPath, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error(`cannot open ${zipPath}`));
      const entries: string[] = [];
      let bytes = 0;
      zip.on('error', reject);
      zip.on('end', () => resolvePromise({ entries, bytes }));
      zip.on('entry', (entry: yauzl.Entry) => {
        const target = resolve(dest, entry.fileName);
        if (!target.startsWith(resolve(dest) + sep)) return reject(new Error(`zip entry ${entry.fileName} escapes the extraction folder`));
        entries.push(entry.fileName);
        if (entry.fileName.endsWith('/')) {
          mkdirSync(target, { recursive: true });
          zip.readEntry();
          return;
        }
        bytes += entry.uncompressedSize;
        mkdirSync(dirname(target), { recursive: true });
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return reject(e ?? new Error(`cannot read ${entry.fileName}`));
          pipeline(stream, createWriteStream(target)).then(() => zip.readEntry(), reject);
        });
      });
      zip.readEntry();
    });
  });
}
