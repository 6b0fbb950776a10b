/**
 * Which application versions each environment declares, which one it runs, and where each zip is on this machine,
 * from the release ledgers (releases/<env>.json, see ledger.ts). Without a ledger an environment tracks the current
 * build. Every declared zip is found and verified by sha256 — in the artifacts folder, in the rebuild cache, or
 * rebuilt from its recorded commit — or the whole resolution fails, naming each release that cannot be uploaded.
 */
import { existsSync, readdirSync } from 'node:fs';
import type { ApplicationRelease } from '../stacks/artifact-store';
import { localReleaseZip } from '../stacks/release-layout';
import type { GitError } from './git';
import { ledgerPath, readLedger, type Ledger, type LedgerRelease } from './ledger';
import { displayPath } from './paths';
import { cachedRebuild, rebuildCacheDir, rebuildKey, rebuildReleases, sha256File, type RebuildError } from './rebuild';

/** A release the stacks declare, and where its verified zip is on this machine. */
export interface ArtifactRef extends ApplicationRelease {
  /** Absolute path of the zip, verified against sha256. */
  readonly zipPath: string;
}

export interface ResolvedReleases {
  /** Every retained release, oldest first; the stack declares an S3 object and an application version for each. */
  readonly releases: readonly ArtifactRef[];
  /** The release the environment runs; always one of `releases`. */
  readonly active: ArtifactRef;
}

/** Ledger files of environments the config does not have: a typo or a removed environment, never silently ignored. */
export class UnknownLedgerError extends Error {
  readonly code = 'unknown_ledger';
  constructor(files: readonly string[], configured: readonly string[], configFile: string) {
    super(
      `${files.map((f) => displayPath(f)).join(', ')}: ${files.length === 1 ? 'a ledger' : 'ledgers'} of ${files.length === 1 ? 'an environment' : 'environments'} ` +
        `${displayPath(configFile)} does not configure (it has ${configured.join(', ')}). ` +
        'If an environment name in the config is misspelt, fix the config; if the environment was renamed, `git mv` its ledger to the new name; ' +
        'if it was removed (and destroyed), delete the ledger.',
    );
    this.name = 'UnknownLedgerError';
  }
}

/** Declared releases whose zips can neither be found nor rebuilt: synth stops before writing any stack. */
export class ReleaseUnavailableError extends Error {
  readonly code = 'release_unavailable';
  constructor(problems: readonly string[]) {
    super(
      `${problems.length} declared release${problems.length === 1 ? '' : 's'} cannot be uploaded, so nothing was written:\n` +
        problems.map((p) => `  - ${p.replace(/\n/g, '\n    ')}`).join('\n'),
    );
    this.name = 'ReleaseUnavailableError';
  }
}

export interface ResolveOptions {
  readonly ledgerDir: string;
  readonly artifactsDir: string;
  readonly configFile: string;
  /** The git checkout the ledgers' commits belong to. */
  readonly repoRoot: string;
  /** Progress of rebuilds. */
  readonly log: (line: string) => void;
}

/** Throws UnknownLedgerError when `ledgerDir` holds a ledger of an environment not in `envNames`. */
export function checkLedgerFiles(envNames: readonly string[], ledgerDir: string, configFile: string): void {
  if (!existsSync(ledgerDir)) return;
  const known = new Set(envNames);
  const stray = readdirSync(ledgerDir)
    .filter((f) => f.endsWith('.json') && !f.startsWith('.'))
    .map((f) => f.slice(0, -'.json'.length))
    .filter((name) => !known.has(name))
    .sort();
  if (stray.length > 0) throw new UnknownLedgerError(stray.map((n) => ledgerPath(ledgerDir, n)), envNames, configFile);
}

/**
 * Resolves the releases of every environment; an environment without a ledger tracks `current`. Zips missing here are
 * rebuilt from their commits (one worktree per commit); any that cannot be are reported together in one error.
 */
export async function resolveAllReleases(envNames: readonly string[], current: ArtifactRef, opts: ResolveOptions): Promise<Map<string, ResolvedReleases>> {
  checkLedgerFiles(envNames, opts.ledgerDir, opts.configFile);
  const ledgers = new Map<string, Ledger | undefined>(envNames.map((env) => [env, readLedger(opts.ledgerDir, env)]));
  // Content-addressed: any verified zip with a release's sha256 is that release's bytes, whatever its file name.
  const bySha = new Map<string, string>([[current.sha256, current.zipPath]]);
  const missing = new Map<string, { release: LedgerRelease; envs: string[] }>();
  for (const [env, ledger] of ledgers) {
    for (const release of ledger?.releases ?? []) {
      if (bySha.has(release.sha256)) continue;
      const zip = localZip(release, opts);
      if (zip) bySha.set(release.sha256, zip);
      else missing.set(rebuildKey(release), { release, envs: [...(missing.get(rebuildKey(release))?.envs ?? []), env] });
    }
  }
  const problems: string[] = [];
  if (missing.size > 0) {
    const { zips, failures } = await rebuildReleases([...missing.values()].map((m) => m.release), {
      repoRoot: opts.repoRoot,
      cacheDir: rebuildCacheDir(opts.artifactsDir),
      log: opts.log,
    });
    for (const [key, zip] of zips) bySha.set((missing.get(key) as { release: LedgerRelease }).release.sha256, zip);
    for (const [key, failure] of failures) {
      const { release, envs } = missing.get(key) as { release: LedgerRelease; envs: string[] };
      problems.push(unavailable(release.label, envs, failure, opts));
    }
  }
  if (problems.length > 0) throw new ReleaseUnavailableError(problems);

  const resolved = new Map<string, ResolvedReleases>();
  for (const [env, ledger] of ledgers) {
    if (ledger === undefined) {
      resolved.set(env, { releases: [current], active: current });
      continue;
    }
    const releases = ledger.releases.map((r): ArtifactRef => ({ label: r.label, sha256: r.sha256, md5: r.md5, zipPath: bySha.get(r.sha256) as string }));
    resolved.set(env, { releases, active: releases.find((r) => r.label === ledger.active) as ArtifactRef });
  }
  return resolved;
}

/** The zip of `release` on this machine with the recorded bytes: the artifacts folder first, then the rebuild cache. */
export function localZip(release: Pick<LedgerRelease, 'label' | 'sha256' | 'commit' | 'dirty'>, opts: Pick<ResolveOptions, 'artifactsDir' | 'log'>): string | undefined {
  const built = localReleaseZip(opts.artifactsDir, release.label);
  if (existsSync(built)) {
    const actual = sha256File(built);
    if (actual === release.sha256) return built;
    opts.log(`${displayPath(built)} has sha256 ${actual}, not the recorded ${release.sha256}: ignoring it`);
  }
  return cachedRebuild(rebuildCacheDir(opts.artifactsDir), release);
}

function unavailable(label: string, envs: readonly string[], failure: RebuildError | GitError, opts: ResolveOptions): string {
  const where = envs.map((e) => `${e} (${displayPath(ledgerPath(opts.ledgerDir, e))})`).join(', ');
  const fixes =
    failure.code === 'commit_unreachable' || failure.code === 'git_missing' || failure.code === 'not_a_git_repository'
      ? 'then run synth again'
      : `or put its original zip at ${displayPath(localReleaseZip(opts.artifactsDir, label))}, ` +
        `or stop declaring it: \`npm run ops -- prune ${envs[0]} ${label}\` (make another release active first if it is the active one: \`npm run ops -- rollback ${envs[0]}\`)`;
  return `${label}, declared in ${where}, has no zip here and cannot be rebuilt: ${failure.message}; ${fixes}`;
}
