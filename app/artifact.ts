import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ZipFile } from 'yazl';
import { METRICS_EBEXTENSION_PATH, metricsEbextension } from '../stacks/relay-metrics-log';
import { localReleaseZip } from '../stacks/release-layout';
import { bundleService, RELAY_START_COMMAND } from './bundle';
import { THIRD_PARTY_LICENSES_FILE } from './bundle-licenses';
import { headCommitIfAny } from './git';
import { MAX_LABEL_LENGTH } from './ledger';
import { DEFAULT_ARTIFACTS_DIR, REPO_ROOT } from './paths';

/** One built application bundle, named by its content. */
export interface Artifact {
  /** Version label, `relay-<package version>-<short commit>-<first 12 hex of sha256>` (see releaseLabel). */
  readonly label: string;
  /** package.json version of the repository. */
  readonly version: string;
  /** Hex SHA-256 of the zip bytes. */
  readonly sha256: string;
  /** Hex MD5 of the zip bytes (the S3 object's etag). */
  readonly md5: string;
  /** Absolute path of the zip. */
  readonly zipPath: string;
  readonly sizeBytes: number;
}

export interface BuildArtifactOptions {
  /**
   * Folder the zip is written to.
   * @default `<repo>/dist/artifacts`
   */
  readonly outDir?: string;
  /**
   * Reuse the zip built from the same inputs (service/, the bundler, package.json, package-lock.json) instead of
   * bundling again; the bytes would be identical. Synth sets it; reproducibility tests leave it off.
   * @default false
   */
  readonly reuse?: boolean;
  /**
   * The commit the source comes from, named in the label; `null` for a folder that is not a git checkout.
   * @default the checkout's HEAD
   */
  readonly commit?: string | null;
}

/** Length of the commit part of a label (git's usual short hash). */
export const LABEL_COMMIT_CHARS = 7;

/**
 * `relay-<package version>-<first 7 hex of the commit>-<first 12 hex of the zip's sha256>`: people read which version
 * and commit it is, and the label still names the bytes. Outside a git checkout the commit part is left out.
 */
export function releaseLabel(version: string, commit: string | null, sha256: string): string {
  const label = `relay-${version}-${commit ? `${commit.slice(0, LABEL_COMMIT_CHARS)}-` : ''}${sha256.slice(0, 12)}`;
  if (label.length > MAX_LABEL_LENGTH) {
    // A stable code: the ops CLI prints the message alone, as for every other refusal.
    throw Object.assign(new Error(`the version label ${label} is ${label.length} characters, over Elastic Beanstalk's ${MAX_LABEL_LENGTH}; shorten the version in package.json`), {
      code: 'label_too_long',
    });
  }
  return label;
}

/** Files whose content decides the zip's bytes (with the dependency versions pinned by package-lock.json). */
const INPUT_ROOTS = ['service', 'app/paths.ts', 'app/bundle.ts', 'app/bundle-licenses.ts', 'app/artifact.ts', 'stacks/relay-metrics-log.ts', 'package.json', 'package-lock.json'];

// Built from local components because yazl writes DOS (local) time: the stored bytes are then the same in every timezone.
const FIXED_MTIME = new Date(2020, 0, 1, 0, 0, 0);
const FILE_MODE = 0o100644;

/** Bundles the relay and writes a byte-reproducible Beanstalk source bundle named by its SHA-256. */
export async function buildArtifact(opts: BuildArtifactOptions = {}): Promise<Artifact> {
  const outDir = opts.outDir ?? DEFAULT_ARTIFACTS_DIR;
  const commit = opts.commit === undefined ? (headCommitIfAny(REPO_ROOT) ?? null) : opts.commit;
  if (!opts.reuse) return build(outDir, commit);
  // The commit is part of the label, so a build of the same source at another commit is recorded apart.
  const record = join(outDir, '.inputs', `${inputsDigest()}-${commit ?? 'none'}.json`);
  const reused = reusable(record);
  if (reused) return reused;
  const artifact = await build(outDir, commit);
  mkdirSync(join(outDir, '.inputs'), { recursive: true });
  writeFileSync(record, `${JSON.stringify(artifact)}\n`);
  return artifact;
}

/** The artifact a record points at, if its zip is still there with the recorded bytes. */
function reusable(record: string): Artifact | undefined {
  try {
    const artifact = JSON.parse(readFileSync(record, 'utf8')) as Artifact;
    if (!existsSync(artifact.zipPath)) return undefined;
    const sha256 = createHash('sha256').update(readFileSync(artifact.zipPath)).digest('hex');
    return sha256 === artifact.sha256 ? artifact : undefined;
  } catch {
    return undefined;
  }
}

/** SHA-256 over the relative path and content of every input file, in a fixed order. */
function inputsDigest(): string {
  const hash = createHash('sha256');
  const visit = (rel: string): void => {
    const abs = join(REPO_ROOT, rel);
    if (!existsSync(abs)) return;
    let names: string[] | undefined;
    try {
      names = readdirSync(abs).sort();
    } catch {
      names = undefined;
    }
    if (names === undefined) {
      hash.update(`${rel}\0`).update(readFileSync(abs)).update('\0');
      return;
    }
    for (const name of names) visit(`${rel}/${name}`);
  };
  for (const root of INPUT_ROOTS) visit(root);
  return hash.digest('hex');
}

async function build(outDir: string, commit: string | null): Promise<Artifact> {
  const pkg = readRepoPackage();
  const work = mkdtempSync(join(tmpdir(), 'relay-artifact-'));
  try {
    const bundle = await bundleService(join(work, 'bundle'));
    const entries = new Map<string, Buffer>();
    entries.set('server.js', readFileSync(bundle.serverJs));
    entries.set(THIRD_PARTY_LICENSES_FILE, readFileSync(bundle.licensesTxt));
    entries.set('package.json', Buffer.from(deployedPackageJson(pkg.name, pkg.version)));
    entries.set('Procfile', Buffer.from(`web: ${RELAY_START_COMMAND}\n`));
    // Streams the relay's EMF file to CloudWatch, where the scaling policy and alarms read its metrics.
    entries.set(METRICS_EBEXTENSION_PATH, Buffer.from(metricsEbextension()));
    for (const name of bundle.publicFiles) entries.set(`public/${name}`, readFileSync(join(work, 'bundle', 'public', name)));

    const zip = await zipEntries(entries);
    const sha256 = createHash('sha256').update(zip).digest('hex');
    const md5 = createHash('md5').update(zip).digest('hex');
    const label = releaseLabel(pkg.version, commit, sha256);
    mkdirSync(outDir, { recursive: true });
    const zipPath = localReleaseZip(outDir, label);
    // Write then rename so a concurrent reader never sees half a zip.
    const partial = join(outDir, `.${label}.${process.pid}.partial`);
    writeFileSync(partial, zip);
    renameSync(partial, zipPath);
    return { label, version: pkg.version, sha256, md5, zipPath, sizeBytes: zip.length };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The package.json Beanstalk sees: no dependencies, so the platform runs no npm install. */
function deployedPackageJson(name: string, version: string): string {
  const manifest = {
    name,
    version,
    private: true,
    engines: { node: '>=20' },
    main: 'server.js',
    scripts: { start: RELAY_START_COMMAND },
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

function readRepoPackage(): { name: string; version: string } {
  const raw: unknown = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
  if (typeof raw !== 'object' || raw === null) throw new Error('package.json is not an object');
  const { name, version } = raw as Record<string, unknown>;
  if (typeof name !== 'string' || typeof version !== 'string') {
    throw new Error(`package.json needs string "name" and "version" to label the artifact (got ${JSON.stringify({ name, version })})`);
  }
  return { name, version };
}

function zipEntries(entries: ReadonlyMap<string, Buffer>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const zip = new ZipFile();
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c));
    zip.outputStream.on('error', reject);
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    for (const name of [...entries.keys()].sort()) {
      zip.addBuffer(entries.get(name) as Buffer, name, { mtime: FIXED_MTIME, mode: FILE_MODE, compress: true, forceDosTimestamp: true });
    }
    zip.end();
  });
}
