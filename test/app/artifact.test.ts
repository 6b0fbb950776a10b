import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build, type Metafile } from 'esbuild';
import { open, type Entry } from 'yauzl';
import { buildArtifact, releaseLabel, type Artifact } from '../../app/artifact';
import { RELAY_BUNDLE_OPTIONS } from '../../app/bundle';
import { bundledPackages } from '../../app/bundle-licenses';
import { REPO_ROOT } from '../../app/paths';
import { METRICS_EBEXTENSION_PATH, metricsLogGroupName } from '../../stacks/relay-metrics-log';

const run = promisify(execFile);

interface ZipEntry {
  name: string;
  mode: number;
  dosDate: number;
  dosTime: number;
  extraFieldLength: number;
  compressed: boolean;
  data: Buffer;
}

function readZip(file: string): Promise<ZipEntry[]> {
  return new Promise((resolve, reject) => {
    open(file, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      const out: ZipEntry[] = [];
      zip.on('error', reject);
      zip.on('end', () => resolve(out));
      zip.on('entry', (entry: Entry) => {
        zip.openReadStream(entry, (e, stream) => {
          if (e) return reject(e);
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', reject);
          stream.on('end', () => {
            out.push({
              name: entry.fileName,
              mode: entry.externalFileAttributes >>> 16,
              dosDate: entry.lastModFileDate,
              dosTime: entry.lastModFileTime,
              extraFieldLength: entry.extraFieldLength,
              compressed: entry.compressionMethod === 8,
              data: Buffer.concat(chunks),
            });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

/** The esbuild metafile of the relay's bundle, built with the artifact's options (inputs with what each put in). */
async function bundleMetafile(): Promise<Metafile> {
  const { metafile } = await build({ ...RELAY_BUNDLE_OPTIONS, write: false, metafile: true });
  return metafile;
}

// Builds the artifact in a fresh process so TZ is read at start-up, as it is on a build machine.
async function buildInProcess(outDir: string, tz: string): Promise<Artifact> {
  const script = join(outDir, 'build.ts');
  writeFileSync(script, `import { buildArtifact } from ${JSON.stringify(join(REPO_ROOT, 'app', 'artifact'))};\nbuildArtifact({ outDir: ${JSON.stringify(outDir)} }).then((a) => process.stdout.write(JSON.stringify(a)));\n`);
  const { stdout } = await run(join(REPO_ROOT, 'node_modules', '.bin', 'tsx'), [script], { env: { ...process.env, TZ: tz }, timeout: 120_000 });
  return JSON.parse(stdout) as Artifact;
}

describe('buildArtifact', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'relay-artifact-test-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  let first: Artifact;
  beforeAll(async () => {
    first = await buildArtifact({ outDir: tempDir() });
  }, 120_000);

  it('names the zip by version and content, and reports its hashes and size', () => {
    const bytes = readFileSync(first.zipPath);
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect(first.version).toBe(version);
    expect(first.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(first.md5).toBe(createHash('md5').update(bytes).digest('hex'));
    // This checkout's HEAD is the commit part (the tests run in a git checkout).
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    expect(first.label).toBe(`relay-${version}-${head.slice(0, 7)}-${first.sha256.slice(0, 12)}`);
    expect(first.label.length).toBeLessThanOrEqual(100);
    expect(first.zipPath).toMatch(new RegExp(`/${first.label}\\.zip$`));
    expect(first.sizeBytes).toBe(bytes.length);
  });

  it('labels without a commit outside git, and refuses a label over 100 characters', () => {
    expect(releaseLabel('1.2.3', null, 'ab'.repeat(32))).toBe('relay-1.2.3-abababababab');
    expect(releaseLabel('1.2.3-rc.1', '0123456789abcdef0123456789abcdef01234567', 'cd'.repeat(32))).toBe('relay-1.2.3-rc.1-0123456-cdcdcdcdcdcd');
    expect(() => releaseLabel(`1.0.0-${'x'.repeat(80)}`, '0123456789abcdef0123456789abcdef01234567', 'cd'.repeat(32))).toThrow(
      /^the version label relay-1\.0\.0-x+-0123456-cdcdcdcdcdcd is \d+ characters, over Elastic Beanstalk's 100; shorten the version in package.json$/,
    );
  });

  it('holds server.js, a dependency-free package.json and the Procfile, sorted, with fixed mode and time', async () => {
    const entries = await readZip(first.zipPath);
    const names = entries.map((e) => e.name);
    expect(names).toEqual([...names].sort());
    const top = ['.ebextensions/relay-metrics.config', 'Procfile', 'THIRD-PARTY-LICENSES.txt', 'package.json', 'server.js'];
    expect(names).toEqual(expect.arrayContaining(top));
    expect(names.filter((n) => !top.includes(n)).every((n) => n.startsWith('public/'))).toBe(true);
    for (const e of entries) {
      expect(e.mode).toBe(0o100644);
      // 2020-01-01 00:00:00 in DOS format, with no extended-timestamp field that would carry a timezone-dependent UTC time.
      expect([e.dosDate, e.dosTime]).toEqual([((2020 - 1980) << 9) | (1 << 5) | 1, 0]);
      expect(e.extraFieldLength).toBe(0);
      expect(e.compressed).toBe(true);
    }
    const byName = new Map(entries.map((e) => [e.name, e.data.toString('utf8')]));
    expect(byName.get('Procfile')).toBe('web: node --max-semi-space-size=16 --expose-gc server.js\n');
    const pkg = JSON.parse(byName.get('package.json') as string) as Record<string, unknown>;
    expect(pkg).toEqual({
      name: 'relay-stack',
      version: first.version,
      private: true,
      engines: { node: '>=20' },
      main: 'server.js',
      scripts: { start: 'node --max-semi-space-size=16 --expose-gc server.js' },
    });
    expect(byName.get('server.js')?.length).toBeGreaterThan(1000);
  });

  it('carries the license and notice files of every package bundled into server.js', async () => {
    // GIVEN the notices file of the zip and the packages whose code esbuild put into server.js
    const entries = await readZip(first.zipPath);
    const notices = entries.find((e) => e.name === 'THIRD-PARTY-LICENSES.txt')?.data.toString('utf8') ?? '';
    const bundled = bundledPackages(await bundleMetafile(), REPO_ROOT);
    // THEN the relay's direct dependencies are among them and the file lists exactly them, by name and version
    expect(bundled.map((p) => p.name)).toEqual(expect.arrayContaining(['@redis/client', 'jose', 'pino', 'prom-client', 'ws', 'zod']));
    const headings = [...notices.matchAll(/^={80}\n(.+)\n={80}$/gm)].map((m) => m[1]);
    expect(headings).toEqual(bundled.map((p) => `${p.name} ${p.version} (${p.license})`));
    // AND each package's own license text, as it ships it, is in the file (Apache-2.0 ones too: they need the full text)
    for (const p of bundled) {
      expect(JSON.parse(readFileSync(join(p.dir, 'package.json'), 'utf8'))).toMatchObject({ name: p.name, version: p.version });
      const own = readdirSync(p.dir).filter((n) => /^(licen[cs]e|notice)/i.test(n));
      for (const name of own) expect(notices).toContain(readFileSync(join(p.dir, name), 'utf8').replace(/\r\n/g, '\n').trimEnd());
      if (own.length === 0) expect(notices).toContain(`${p.name} ${p.version} (${p.license})\n${'='.repeat(80)}\n\nThe package ships no license file; its package.json declares ${p.license}`);
    }
    expect(notices).toContain('TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION');
  }, 120_000);

  it('stays under the 300 KB target, with only the zod code the relay calls and its English messages', async () => {
    // Imported as a namespace, zod is tree-shaken; the named `z` export would keep every schema and all of its locales.
    const [output] = Object.values((await bundleMetafile()).outputs);
    const zodFiles = Object.entries(output.inputs)
      .filter(([path, input]) => path.includes('node_modules/zod/') && input.bytesInOutput > 0)
      .map(([path]) => path.slice(path.indexOf('node_modules/zod/') + 'node_modules/zod/'.length));
    expect(zodFiles).toContain('v4/locales/en.js');
    expect(zodFiles.filter((f) => f.includes('/locales/') && f !== 'v4/locales/en.js')).toEqual([]);
    expect(first.sizeBytes).toBeLessThanOrEqual(300_000);
  }, 120_000);

  it('carries the .ebextensions file that streams the EMF file into the log group the stack creates', async () => {
    // GIVEN the zip's configuration file, parsed as Beanstalk reads it (JSON is one of its two formats)
    const entries = await readZip(first.zipPath);
    const text = entries.find((e) => e.name === METRICS_EBEXTENSION_PATH)?.data.toString('utf8');
    expect(text).toBeDefined();
    const config = JSON.parse(text as string) as {
      files: Record<string, { content: string; mode: string; owner: string }>;
      commands: Record<string, { command: string }>;
    };
    expect(Object.keys(config).sort()).toEqual(['commands', 'files']);

    // WHEN Beanstalk replaces its inline function with the environment's name
    const file = config.files['/opt/aws/amazon-cloudwatch-agent/etc/relay-metrics.json'];
    expect(file).toMatchObject({ mode: '000644', owner: 'root' });
    expect(file.content.split('`{"Ref":"AWSEBEnvironmentName"}`')).toHaveLength(2);
    const agent = JSON.parse(file.content.replace('`{"Ref":"AWSEBEnvironmentName"}`', 'relay-prod')) as unknown;

    // THEN the agent collects the file the relay writes (RELAY_EMF_FILE) into the stack's log group, one stream per instance
    expect(agent).toEqual({
      logs: {
        logs_collected: {
          files: {
            collect_list: [{ file_path: '/var/log/relay/metrics.log', log_group_name: '/aws/elasticbeanstalk/relay-prod/var/log/relay/metrics.log', log_stream_name: '{instance_id}' }],
          },
        },
      },
    });
    expect(metricsLogGroupName('relay-prod')).toBe('/aws/elasticbeanstalk/relay-prod/var/log/relay/metrics.log');
    // AND the folder is the app user's and the configuration is appended to the running agent, in that order
    expect(Object.entries(config.commands).sort(([a], [b]) => a.localeCompare(b)).map(([, c]) => c.command)).toEqual([
      'install -d -m 0755 -o webapp -g webapp /var/log/relay',
      '/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a append-config -m ec2 -s -c file:/opt/aws/amazon-cloudwatch-agent/etc/relay-metrics.json',
    ]);
  });

  it('gives the same bytes when built again', async () => {
    const second = await buildArtifact({ outDir: tempDir() });
    expect(second.sha256).toBe(first.sha256);
    expect(readFileSync(second.zipPath).equals(readFileSync(first.zipPath))).toBe(true);
  }, 120_000);

  it('gives the same bytes in UTC and in Asia/Tokyo', async () => {
    const [utc, tokyo] = await Promise.all([buildInProcess(tempDir(), 'UTC'), buildInProcess(tempDir(), 'Asia/Tokyo')]);
    expect(tokyo.sha256).toBe(utc.sha256);
    expect(utc.sha256).toBe(first.sha256);
    expect(readFileSync(tokyo.zipPath).equals(readFileSync(utc.zipPath))).toBe(true);
  }, 180_000);

  it('reuses the zip built from the same inputs, and rebuilds when that zip no longer has the recorded bytes', async () => {
    // GIVEN a zip built with reuse on
    const dir = tempDir();
    const built = await buildArtifact({ outDir: dir, reuse: true });
    expect(built.sha256).toBe(first.sha256);
    const writtenAt = statSync(built.zipPath).mtimeMs;
    // WHEN built again from the same inputs THEN the same file is returned untouched
    const reused = await buildArtifact({ outDir: dir, reuse: true });
    expect(reused).toEqual(built);
    expect(statSync(reused.zipPath).mtimeMs).toBe(writtenAt);
    // WHEN the zip was damaged THEN it is rebuilt with the right bytes
    writeFileSync(built.zipPath, 'not a zip');
    const rebuilt = await buildArtifact({ outDir: dir, reuse: true });
    expect(rebuilt.sha256).toBe(first.sha256);
    expect(createHash('sha256').update(readFileSync(rebuilt.zipPath)).digest('hex')).toBe(first.sha256);
  }, 120_000);
});
