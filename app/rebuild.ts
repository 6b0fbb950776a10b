/**
 * Rebuilding a release from the commit its ledger records: a temporary `git worktree` at that commit, `npm ci`, the
 * artifact build of that commit's own code, and the sha256 checked against the ledger. Verified zips are cached by
 * label, so the next synth finds them at once.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localReleaseZip } from '../stacks/release-layout';
import { git, GitError, requireCommit } from './git';
import { displayPath } from './paths';
import { CodedError } from './coded-error';

/** What a rebuild needs to know of a release. */
export interface RebuildTarget {
  readonly label: string;
  readonly sha256: string;
  readonly commit: string;
  readonly dirty?: true;
}

export type RebuildErrorCode = 'rebuild_mismatch' | 'rebuild_impossible' | 'rebuild_failed';

/** A release that could not be rebuilt to its recorded bytes; `message` says why and names both hashes on a mismatch. */
export class RebuildError extends CodedError<RebuildErrorCode> {}

export interface RebuildOptions {
  /** The git checkout the commits belong to. */
  readonly repoRoot: string;
  /** Where verified rebuilt zips are kept, `<cacheDir>/<label>.zip`. */
  readonly cacheDir: string;
  /** Progress lines (one per step) for the person waiting. */
  readonly log: (line: string) => void;
  /** Rebuild even when a verified zip is cached (`ops rebuild` checks reproducibility). @default false */
  readonly ignoreCache?: boolean;
  /** Limit for each of `npm ci` and the build. @default 15 minutes */
  readonly stepTimeoutMs?: number;
}

/** Folder of rebuilt zips inside the artifacts folder. */
export function rebuildCacheDir(artifactsDir: string): string {
  return join(artifactsDir, 'rebuilt');
}

/** The cached rebuild of `target`, if there and still holding the recorded bytes. */
export function cachedRebuild(cacheDir: string, target: RebuildTarget): string | undefined {
  const zip = localReleaseZip(cacheDir, target.label);
  return existsSync(zip) && sha256File(zip) === target.sha256 ? zip : undefined;
}

/** Identifies a target in rebuildReleases' results: two ledgers may record one label with different provenance. */
export function rebuildKey(target: RebuildTarget): string {
  return `${target.label} ${target.commit} ${target.sha256}${target.dirty ? ' dirty' : ''}`;
}

/**
 * Rebuilds every target from its commit (one worktree and one `npm ci` per commit) and returns the verified zip of
 * each by label. A target that cannot be rebuilt to its bytes is returned in `failures` with the reason, so a caller
 * can report all of them at once. Both maps are keyed by rebuildKey.
 */
export async function rebuildReleases(
  targets: readonly RebuildTarget[],
  opts: RebuildOptions,
): Promise<{ zips: Map<string, string>; failures: Map<string, RebuildError | GitError> }> {
  const zips = new Map<string, string>();
  const failures = new Map<string, RebuildError | GitError>();
  const byCommit = new Map<string, RebuildTarget[]>();
  for (const target of targets) {
    const cached = opts.ignoreCache ? undefined : cachedRebuild(opts.cacheDir, target);
    if (cached) {
      zips.set(rebuildKey(target), cached);
      continue;
    }
    const impossible = whyNotRebuildable(target);
    if (impossible) {
      failures.set(rebuildKey(target), impossible);
      continue;
    }
    byCommit.set(target.commit, [...(byCommit.get(target.commit) ?? []), target]);
  }
  for (const [commit, group] of byCommit) {
    try {
      requireCommit(opts.repoRoot, commit, group[0].label);
      const built = await buildAtCommit(commit, opts);
      const actual = createHash('sha256').update(built).digest('hex');
      for (const target of group) {
        if (actual !== target.sha256) {
          failures.set(
            rebuildKey(target),
            new RebuildError(
              'rebuild_mismatch',
              `${target.label}: rebuilding commit ${commit} gave sha256 ${actual}, but the ledger records ${target.sha256}. ` +
                'The commit does not reproduce the released bytes (its source or package-lock.json differs from what was built); ' +
                'do not deploy this release from here: find its original zip, or release again and roll forward',
            ),
          );
          continue;
        }
        mkdirSync(opts.cacheDir, { recursive: true });
        const dest = localReleaseZip(opts.cacheDir, target.label);
        const partial = `${dest}.${process.pid}.partial`;
        writeFileSync(partial, built);
        renameSync(partial, dest);
        zips.set(rebuildKey(target), dest);
        opts.log(`rebuilt ${target.label} from ${commit.slice(0, 12)}: sha256 verified, cached in ${displayPath(dest)}`);
      }
    } catch (err) {
      if (!(err instanceof RebuildError || err instanceof GitError)) throw err;
      for (const target of group) failures.set(rebuildKey(target), err);
    }
  }
  return { zips, failures };
}

function whyNotRebuildable(target: RebuildTarget): RebuildError | undefined {
  if (target.dirty) {
    return new RebuildError(
      'rebuild_impossible',
      `${target.label} was built from uncommitted changes (dirty), so no commit rebuilds it; only the machine that built it has its zip`,
    );
  }
  if (target.commit === 'unknown') {
    return new RebuildError('rebuild_impossible', `${target.label} records no commit (it was built outside a git checkout), so it cannot be rebuilt`);
  }
  return undefined;
}

/** Checks `commit` out in a temporary worktree, installs, builds with that commit's own code, returns the zip's bytes. */
async function buildAtCommit(commit: string, opts: RebuildOptions): Promise<Buffer> {
  const work = mkdtempSync(join(tmpdir(), 'relay-rebuild-'));
  const tree = join(work, 'src');
  const out = join(work, 'out');
  const started = Date.now();
  try {
    opts.log(`rebuilding commit ${commit.slice(0, 12)} in a temporary worktree (npm ci and a build: about a minute)...`);
    git(opts.repoRoot, ['worktree', 'add', '--detach', '--force', tree, commit]);
    await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], tree, opts);
    // The commit's own artifact builder: the bytes are whatever that code produced when the release was made.
    const script = `require('./app/artifact').buildArtifact({ outDir: ${JSON.stringify(out)} }).then(() => undefined, (e) => { console.error(e); process.exit(1); });`;
    await run(join(tree, 'node_modules', '.bin', 'tsx'), ['--eval', script], tree, opts);
    const zips = existsSync(out) ? readdirSync(out).filter((f) => f.endsWith('.zip')) : [];
    if (zips.length !== 1) throw new RebuildError('rebuild_failed', `building commit ${commit} produced ${zips.length} zips in ${out}, expected one`);
    opts.log(`built commit ${commit.slice(0, 12)} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return readFileSync(join(out, zips[0]));
  } finally {
    try {
      git(opts.repoRoot, ['worktree', 'remove', '--force', tree]);
    } catch {
      // already gone, or never added: pruning below forgets it either way
    }
    rmSync(work, { recursive: true, force: true });
    try {
      git(opts.repoRoot, ['worktree', 'prune']);
    } catch {
      // best effort
    }
  }
}

function run(command: string, args: readonly string[], cwd: string, opts: RebuildOptions): Promise<void> {
  const timeout = opts.stepTimeoutMs ?? 15 * 60_000;
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    // The parent's RELAY_* paths point at the caller's project; the commit's build must use its own.
    for (const name of Object.keys(env)) if (name.startsWith('RELAY_') || name.startsWith('npm_')) delete env[name];
    const child = spawn(command, [...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout });
    let output = '';
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => reject(new RebuildError('rebuild_failed', `could not run ${command}: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else {
        const why = signal ? `was stopped by ${signal}${signal === 'SIGTERM' ? ` after ${timeout / 1000} s` : ''}` : `exited ${code}`;
        reject(new RebuildError('rebuild_failed', `${[command.split('/').pop(), ...args.slice(0, 1)].join(' ')} ${why} in the rebuild worktree:\n${output.trim()}`));
      }
    });
  });
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
